"""Writes that are all-or-nothing: a reader (or a crash) never sees half a file or folder
(exports, the final model, the files beside it).

Everything is produced under a hidden temporary name in the destination folder (same file
system, so the final rename is atomic) and renamed into place once complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError


def partial_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def ensure_writable(folder: Path, what: str = "the export", flag: str = "--out DIR") -> Path:
    """Create `folder` if needed and prove a file can be written there, or raise a UserError
    (checked before the work, so that a long job does not end unable to write its result)."""
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                where = "is a file" if parent == folder else f"lies under {parent}, which is a file"
                raise UserError(f"cannot write {what} to {folder}: it {where}, not a folder; pass {flag}")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UserError(f"cannot write {what} to {folder}: {err.strerror or err}; pass {flag}") from None
    return folder


def check_writable_file(path: Path, what: str, flag: str, ours=None) -> bool:
    """Before the work: `path` can be written, and if it exists it is a file orpo-dist wrote
    (`ours(path)` says so), which is then replaced. Returns whether it exists."""
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder: give a file name for {what}")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UserError(f"cannot write {what} to {path}: it lies under {blocker}, which is a file; pass another {flag}")
    ensure_writable(path.parent, what, flag)
    if not path.exists():
        return False
    if ours is not None and not ours(path):
        raise UserError(f"{path} exists and is not {what} orpo-dist wrote: give another {flag} (nothing was written)")
    return True


def write_text(path: Path, text: str) -> None:
    tmp = partial_path(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def copy_file(source: Path, path: Path) -> None:
    """`source` copied to `path`, which appears whole or not at all."""
    tmp = partial_path(path)
    try:
        shutil.copyfile(source, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def new_folder(path: Path):
    """Yield an empty temporary folder; on success it replaces `path` (an older export is removed)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(old)
        tmp.rename(path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish_folder_contents(staging: Path, dest: Path) -> None:
    """Move every file `staging` holds into `dest` (each by an atomic rename), then remove it.
    A model saved into `staging` first is never seen half-written in `dest`."""
    for item in sorted(staging.rglob("*"), key=lambda p: len(p.parts)):
        target = dest / item.relative_to(staging)
        if item.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            os.replace(item, target)
    shutil.rmtree(staging, ignore_errors=True)


# How a full disk shows up: OSError(ENOSPC) from Python, "No space left on device (os error 28)"
# from safetensors, and torch.save's PytorchStreamWriter "file write failed" (errno lost).
_DISK_FULL_WORDS = ("No space left on device", "os error 28", "file write failed", "unexpected pos")


def disk_full(err: BaseException, folder: Path, low_bytes: int = 64 << 20) -> bool:
    """Whether `err` (raised while writing under `folder`) comes from a full disk."""
    import errno

    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if not any(w in str(err) for w in _DISK_FULL_WORDS):
        return False
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
    return "No space left" in str(err) or shutil.disk_usage(existing).free < low_bytes
