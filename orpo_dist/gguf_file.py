"""A GGUF file checked before anything loads it: it exists, it is GGUF, and it is whole.

Without this, transformers reports a truncated download as "cannot reshape array of size N into
shape (49152, 612)" and a file that is not GGUF at all as a missing file on the hub.
"""

from __future__ import annotations

from pathlib import Path

from .errors import UserError

GGUF_MAGIC = b"GGUF"


def check_gguf_file(path: str | Path, what: str = "GGUF file") -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{what} {path} does not exist")
    if not path.is_file():
        raise UserError(f"{what} {path} is not a file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise UserError(f"{path} is not a GGUF file (it does not start with the GGUF signature): "
                        "give a .gguf file written by llama.cpp, orpo-dist export or another GGUF writer")
    import gguf

    size = path.stat().st_size
    try:
        reader = gguf.GGUFReader(path)
        end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    except Exception as err:  # noqa: BLE001 - numpy's reshape and struct errors from a short file
        raise UserError(f"{path} is incomplete or damaged ({size / 2**20:.1f} MiB; reading it failed: "
                        f"{str(err)[:120]}): download or export it again") from None
    if end > size:
        raise UserError(f"{path} is incomplete: its tensors need {end / 2**20:.1f} MiB and the file holds "
                        f"{size / 2**20:.1f} MiB; download or export it again")
    return path
