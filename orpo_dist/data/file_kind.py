"""What a data file really holds, whatever its name says.

Files get renamed and saved by other programs: a JSON array saved as `.jsonl`, a gzip file
without `.gz`, a `.gz` that was already unpacked, Parquet under another name, a CSV written by
Excel (a UTF-8 byte-order mark, or `;` between the cells). The first bytes decide how a file is
read; when they disagree with the name, the data report says so in a note.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

from ..errors import UserError

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
UTF8_BOM = b"\xef\xbb\xbf"
_SNIFF_BYTES = 64 * 1024


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def open_bytes(path: Path):
    """The file's bytes, unpacked when it is gzip (told by its content, not its name)."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def head_bytes(path: Path) -> bytes:
    try:
        with open_bytes(path) as f:
            return f.read(_SNIFF_BYTES)
    except (OSError, EOFError) as err:
        raise UserError(f"{path}: cannot read it ({err}); is the file complete?") from None


def content_kind(path: Path) -> str:
    """'parquet', 'json' (an array, an object, or JSON lines), 'empty' or 'text' (CSV or anything else)."""
    head = head_bytes(path)
    if head[:4] == PARQUET_MAGIC:
        return "parquet"
    text = head.removeprefix(UTF8_BOM).lstrip()
    if not text:
        return "empty"
    return "json" if text[:1] in (b"[", b"{") else "text"


def describe(kind: str, gzipped: bool) -> str:
    return {"parquet": "Parquet", "json": "JSON", "text": "text", "empty": "nothing"}[kind] + \
        (" (gzip-compressed)" if gzipped else "")


def csv_dialect(sample: str):
    """The delimiter Excel and others used: ',' unless the header line splits better on ';' or tab."""
    header = sample.splitlines()[0] if sample else ""
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    delimiter = max(counts, key=counts.get) if max(counts.values()) else ","
    return csv.excel_tab if delimiter == "\t" else type("Dialect", (csv.excel,), {"delimiter": delimiter})
