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
    """Ctrl-C (SIGINT), SIGTERM or SIGHUP: not an error of the run; the message names what is kept
    and how to go on. Exits 128 + the signal's number, as a shell reports it."""

    exit_code = 130  # 128 + SIGINT

    def __init__(self, message: str, signum: int = 2):
        super().__init__(message)
        self.exit_code = 128 + signum


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a `kill`, a scheduler's pre-emption, a closed terminal), raised where the
    main thread is, as Ctrl-C raises KeyboardInterrupt: every `finally` runs (partial files are
    removed, locks released, child processes stopped) and the command ends in one line."""

    def __init__(self, signum: int):
        import signal

        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stopped_words(err: BaseException) -> str:
    """"interrupted", or "interrupted by SIGTERM": how a command says which signal ended it."""
    return f"{INTERRUPTED} by {err.args[0]}" if isinstance(err, Stopped) else INTERRUPTED


def signal_number(err: BaseException) -> int:
    return err.signum if isinstance(err, Stopped) else 2  # SIGINT
