"""The one exception type the CLI turns into a clear message and a non-zero exit, and the words a
training process and its launcher agree on when a rank loses its peers."""

# A training rank whose collective failed because another process or the link to it went away
# prints "orpo-dist: rank R <LOST_CONTACT> (<the collective's error>); stopping" (train.py); the
# launcher's stderr relay picks that line up to say why the rank exited (launcher/failures.py).
LOST_CONTACT = "lost contact with the other training processes"


class UserError(Exception):
    """Bad input from the user: the message says what is wrong and how to fix it."""

    exit_code = 2


# What a training process prints when Ctrl-C stops it; a launcher above it drops its ranks' copies
# of that line and says it once for the whole job.
INTERRUPTED = "interrupted"


class Interrupted(UserError):
    """Ctrl-C (SIGINT): not an error of the run; the message names what is kept and how to go on."""

    exit_code = 130  # 128 + SIGINT, as a shell reports it
