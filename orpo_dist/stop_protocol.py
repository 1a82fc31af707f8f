"""The contract between a training run and whatever launched it, for a clean checkpoint-and-stop.

Launchers (accelerate commands, Slurm jobs) ask a run to stop by creating OUTPUT_DIR/STOP or by
sending SIGUSR1/SIGUSR2 to its ranks; the run saves a checkpoint, writes OUTPUT_DIR/STOPPED and
exits with EXIT_STOPPED. torchrun reports any rank's non-zero status as 1, so the STOPPED file is
what a launcher checks. No heavy imports here: both layers use it.
"""

STOP_FILE = "STOP"
STOPPED_FILE = "STOPPED"
EXIT_STOPPED = 75  # EX_TEMPFAIL: not done, not failed; continue with --resume
