"""Which process this is, as the launchers' environment says it (torchrun, accelerate, srun).

The one definition of "the main process": global rank 0 when RANK is set, else local rank 0
when only LOCAL_RANK is, else this is a single process. It decides who prints and who writes
the run folder's files. No heavy imports.
"""

from __future__ import annotations

import os


def is_main_process() -> bool:
    rank = os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or "0"
    return rank.strip() in ("", "0")


def main_process_print(message: str, **kwargs) -> None:
    """print() on the main process only (flushed: ranks interleave their output otherwise)."""
    if is_main_process():
        print(message, flush=True, **kwargs)
