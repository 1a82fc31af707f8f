"""Who writes a run folder: the claim that makes a folder a run's, and the lock held for a run's life.

A folder becomes a run's when orpo-dist first writes into it (RUN_MARKER_FILE; runs of releases
before it are known by their versions.json); anything else in a non-empty folder is somebody
else's, and no run writes among it. While a run trains, its main process holds LOCK_FILE (pid,
host, process start, Slurm job, since) and refreshes it every HEARTBEAT_S; a second writer (another
`train`, a `--resume` of the same folder) refuses in one line naming the first, and readers say the
run is still going. A lock whose process is gone (on this host), whose Slurm job is this one's
earlier start (a requeue), or which another host stopped refreshing is stale, and is named and
replaced. No heavy imports: launchers and login nodes read locks too.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .run_folder import LOCK_FILE, RUN_MARKER_FILE, VERSIONS_FILE

HEARTBEAT_S = 30.0
STALE_AFTER_S = 4 * HEARTBEAT_S  # a lock another host has not refreshed for this long is left by a dead run


def is_run_folder(folder: str | Path) -> bool:
    """Did orpo-dist claim `folder` (or write a run of an older release there)?"""
    folder = Path(folder)
    if (folder / RUN_MARKER_FILE).is_file():
        return True
    try:
        versions = json.loads((folder / VERSIONS_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(versions, dict) and "orpo-dist" in (versions.get("packages") or {})


def claim(folder: str | Path, by: str) -> None:
    """Mark `folder` as a run's (created if missing); kept for the folder's life."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / RUN_MARKER_FILE
    if not marker.exists():
        # Only the command's name: its arguments stay in the LOCK of the run's life, not in a file kept for good.
        marker.write_text(json.dumps({"created": _now(), "by": " ".join(by.split()[:2])}) + "\n")


@dataclass
class Holder:
    pid: int
    host: str
    since: str
    command: str
    start: str | None  # the process's start time (Linux /proc), so a reused pid is not mistaken for it
    slurm_job: str | None
    heard_s: float  # seconds since the holder last refreshed the lock

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}, since {self.since}" + (f" (`{self.command}`)" if self.command else "")


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")


def _process_start(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, starttime (the name in parentheses may hold spaces)


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    return start is None or _process_start(pid) in (None, start)


def read_holder(folder: str | Path) -> Holder | None:
    path = Path(folder) / LOCK_FILE
    try:
        data = json.loads(path.read_text())
        heard = time.time() - path.stat().st_mtime
        return Holder(int(data["pid"]), str(data["host"]), str(data.get("since", "?")), str(data.get("command", "")),
                      data.get("start"), data.get("slurm_job"), heard)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        # Being written this instant, or damaged: a holder that never refreshes it goes stale.
        try:
            heard = time.time() - path.stat().st_mtime
        except OSError:
            return None
        return Holder(-1, "?", "?", "", None, None, heard)


def stale_reason(holder: Holder) -> str | None:
    """Why `holder`'s lock no longer stands for a live run, or None while it does."""
    ours = os.environ.get("SLURM_JOB_ID")
    if holder.pid == -1:
        return f"the lock is unreadable and {holder.heard_s:.0f} s old" if holder.heard_s > 5 else None
    if holder.slurm_job and holder.slurm_job == ours and holder.pid != os.getpid():
        return f"it was left by an earlier start of this Slurm job ({ours}), which has ended"
    if holder.host == socket.gethostname():
        if holder.pid == os.getpid():
            return "it was left by this process"
        if not _alive(holder.pid, holder.start):
            return f"its process {holder.pid} on {holder.host} is gone"
        return None
    if holder.heard_s > STALE_AFTER_S:
        return f"{holder.host} has not refreshed it for {holder.heard_s:.0f} s (its run has stopped)"
    return None


def live_holder(folder: str | Path) -> Holder | None:
    """The process writing `folder` right now, or None."""
    holder = read_holder(folder)
    return holder if holder is not None and stale_reason(holder) is None else None


def _busy(folder: Path, holder: Holder) -> str:
    return (f"{folder} is being written by another run ({holder}): two runs in one folder destroy each "
            "other's checkpoints. Wait for it to end, or choose another --output_dir (if that process is "
            f"gone, delete {folder / LOCK_FILE})")


def check_not_being_written(folder: str | Path | None) -> None:
    """What a launcher checks before it starts processes that would write `folder`."""
    holder = live_holder(folder) if folder else None
    if holder is not None:
        raise UserError(_busy(Path(folder), holder))


def training_note(folder: str | Path) -> str | None:
    """A reader of a run that has a model and is training again (--resume with more steps): one
    line saying that the model read is the one saved before, or None when nobody writes the run."""
    holder = live_holder(folder)
    if holder is None:
        return None
    return (f"the run in {folder} is training again ({holder}): this reads the model it saved before, "
            "which the run replaces when it ends")


def refuse_while_training(folder: str | Path, reader: str) -> None:
    """A reader of a run with no final model yet: a UserError naming the run that is still writing
    it, and its last complete checkpoint (which `orpo-dist eval` reads), when it is live."""
    from .run_folder import last_checkpoint

    holder = live_holder(folder)
    if holder is None:
        return
    last = last_checkpoint(folder)
    kept = (f"its last complete checkpoint is {last} (`orpo-dist eval {last}` scores it)" if last
            else "it has no complete checkpoint yet")
    raise UserError(f"the run in {folder} is still training ({holder}) and has not saved its model: "
                    f"{kept}. Run {reader} again when it ends")


class RunLock:
    """Held by a run's main process from its first write into the run folder until it ends."""

    def __init__(self, folder: str | Path, command: str, log=print):
        self.path = Path(folder) / LOCK_FILE
        self.command = command
        self.log = log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._made: list[Path] = []

    def acquire(self) -> RunLock:
        folder = self.path.parent
        self._made = [p for p in (folder / RUN_MARKER_FILE, folder) if not p.exists()]  # undone if nothing else is written
        claim(self.path.parent, self.command)  # first: the other ranks must see a run's folder, never a bare LOCK
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now(), "command": self.command,
                  "start": _process_start(os.getpid()), "slurm_job": os.environ.get("SLURM_JOB_ID")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = read_holder(self.path.parent)
                if holder is None:
                    continue  # released between our two looks
                reason = stale_reason(holder)
                if reason is None:
                    raise UserError(_busy(self.path.parent, holder)) from None
                self.log(f"orpo-dist: replacing a stale lock in {self.path.parent} ({holder}): {reason}")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(record) + "\n")
            break
        else:
            raise UserError(f"cannot take the lock {self.path}: other processes keep taking it; "
                            "is another run starting in this folder?")
        self._thread = threading.Thread(target=self._heartbeat, name="orpo-dist-run-lock", daemon=True)
        self._thread.start()
        atexit.register(self.release)
        return self

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        self._stop.set()
        holder = read_holder(self.path.parent)
        if holder is not None and holder.pid == os.getpid():
            self.path.unlink(missing_ok=True)
        atexit.unregister(self.release)
        # A run refused before it wrote anything leaves no claimed, empty folder behind.
        try:
            if self._made and [p.name for p in self.path.parent.iterdir()] == [RUN_MARKER_FILE]:
                for path in self._made:
                    path.rmdir() if path.is_dir() else path.unlink()
        except OSError:
            pass

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
