"""Writes that are all-or-nothing: a reader (or a crash) never sees half a file or folder.

Everything is produced under a hidden temporary name in the destination folder (same file
system, so the final rename is atomic) and renamed into place once complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError


def partial_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def ensure_writable(folder: Path) -> Path:
    """Create `folder` if needed and prove a file can be written there, or raise a UserError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UserError(f"cannot write the export to {folder}: {err.strerror or err}; pass --out DIR") from None
    return folder


def write_text(path: Path, text: str) -> None:
    tmp = partial_path(path)
    try:
        tmp.write_text(text)
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
