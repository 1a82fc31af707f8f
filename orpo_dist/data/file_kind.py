"""What a data file really holds, whatever its name says.

Files get renamed and saved by other programs: a JSON array saved as `.jsonl`, a gzip file
without `.gz`, a `.gz` that was already unpacked, Parquet under another name, a CSV written by
Excel (a UTF-8 byte-order mark, or `;` between the cells), text saved as UTF-16 by Windows
PowerShell (`Out-File`, `>`). The first bytes decide how a file is read; when they disagree with
the name, or the text is not UTF-8, the data report says so in a note.

A path can also be no file at all: bash's `<(zcat data.jsonl.gz)` is a pipe (/dev/fd/63), which
`Path.is_file()` calls neither file nor folder, and which can be read only once.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import os
import stat
from pathlib import Path

from ..errors import UserError

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
UTF8_BOM = b"\xef\xbb\xbf"
# Byte-order marks of the wide encodings Windows saves text in (PowerShell 5's Out-File and `>`
# write UTF-16 LE), and the Python codec of each; UTF-32's come first, as UTF-32 LE's begins with
# UTF-16 LE's. The "utf-16" and "utf-32" codecs read the mark and drop it.
WIDE_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
             (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_SNIFF_BYTES = 64 * 1024


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def open_bytes(path: Path):
    """The file's bytes, unpacked when it is gzip (told by its content, not its name)."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def _first_bytes(path: Path, size: int = _SNIFF_BYTES) -> bytes:
    try:
        with open_bytes(path) as f:
            return f.read(size)
    except (OSError, EOFError) as err:
        raise UserError(f"{path}: cannot read it ({err}); is the file complete?") from None


def wide_encoding(head: bytes) -> str | None:
    """The Python codec of text in a wide encoding: 'utf-16' or 'utf-32' after their byte-order mark,
    'utf-16-le' or 'utf-16-be' for UTF-16 without one (a zero byte beside each of the first two
    ASCII characters, which UTF-8 text never holds); None for UTF-8."""
    codec = next((codec for bom, codec in WIDE_BOMS if head.startswith(bom)), None)
    if codec is None and len(head) >= 4 and head[0] and head[2] and head[1] == head[3] == 0:
        codec = "utf-16-le"
    if codec is None and len(head) >= 4 and head[1] and head[3] and head[0] == head[2] == 0:
        codec = "utf-16-be"
    return codec


def encoding_name(codec: str) -> str:
    """'UTF-16' for 'utf-16', 'utf-16-le' or 'utf-16-be'; 'UTF-32' for 'utf-32'."""
    return codec.upper()[:6]


def describe_encoding(codec: str) -> str:
    if codec.endswith(("-le", "-be")):
        return f"{encoding_name(codec)} text without a byte-order mark"
    return f"{encoding_name(codec)} text (as Windows PowerShell's Out-File writes)"


def text_encoding(path: Path) -> str | None:
    """The codec of the file's text when it is wide (after unpacking gzip), or None for UTF-8."""
    return wide_encoding(_first_bytes(path, 4))


def to_utf8(data: bytes, path: Path) -> bytes:
    """The text as UTF-8 bytes: wide-encoded text is decoded (its byte-order mark dropped)."""
    codec = wide_encoding(data[:4])
    if codec is None:
        return data
    try:
        return data.decode(codec).encode("utf-8")
    except UnicodeError as err:
        name = encoding_name(codec)
        raise UserError(f"{path} starts as {name} text but does not decode as {name} ({err}); "
                        "save it as UTF-8 and pass that file") from None


def read_text(path: Path) -> str:
    """The whole text of a small file (eval's pairs and probes): gzip unpacked and UTF-16/32 decoded
    as the data layer reads them, or one UserError saying what the file is instead."""
    refuse_special(path)
    try:
        with open_bytes(path) as f:
            data = f.read()
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        raise UserError(f"{path}: cannot read it ({err}); is the file complete?") from None
    try:
        return to_utf8(data, path).decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}): save it as UTF-8 "
                        "and pass that file") from None


def text_lines(path: Path) -> list[str]:
    """read_text's lines, split at newlines only (str.splitlines would also split inside a JSON
    string at U+2028, U+2029 or \\x85, which json.dumps(ensure_ascii=False) leaves as they are)."""
    return [line.removesuffix("\r") for line in read_text(path).split("\n")]


def head_bytes(path: Path) -> bytes:
    """The first bytes of the file's text as UTF-8 (what to sniff its kind from)."""
    head = _first_bytes(path)
    codec = wide_encoding(head[:4])
    # The head may end inside a character: replace it, the sniffing only looks at the start.
    return head.decode(codec, "replace").encode("utf-8") if codec else head


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


def special_kind(path: Path) -> str | None:
    """What `path` is when it is there but is neither a file nor a folder (a pipe, a device, a
    socket), else None. os.stat follows /dev/fd/63 to the pipe it stands for, without opening it."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    kinds = ((stat.S_ISFIFO, "a pipe"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for is_kind, name in kinds if is_kind(mode)), None)


def refuse_special(path: Path) -> None:
    """A UserError when `path` is a pipe, a device or a socket: the data is read more than once (the
    format is sniffed, then the rows read) and by every training process, and a pipe gives its bytes
    to one reader, once."""
    kind = special_kind(path)
    if kind is None:
        return
    if "device" in kind:
        raise UserError(f"{path} is {kind}, not a file: give the path of a data file (.jsonl, .json, .parquet, "
                        ".csv, or one of them gzip-compressed) or of a folder of them")
    example = " (a FIFO, as bash's <(zcat data.jsonl.gz) gives)" if kind == "a pipe" else ""
    raise UserError(f"{path} is {kind}{example}, not a file: orpo-dist reads the data more than once and from "
                    "every training process, so it needs a file. Save the data to a file first "
                    "(zcat data.jsonl.gz > data.jsonl), or pass the .gz file itself: orpo-dist reads gzip directly")


def csv_dialect(sample: str):
    """The delimiter Excel and others used: ',' unless the header line splits better on ';' or tab."""
    header = sample.splitlines()[0] if sample else ""
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    delimiter = max(counts, key=counts.get) if max(counts.values()) else ","
    return csv.excel_tab if delimiter == "\t" else type("Dialect", (csv.excel,), {"delimiter": delimiter})
