"""Read a dataset into raw rows per split: local files, folders, `save_to_disk` output, or the Hub.

JSON and JSON lines are read here line by line (gzip aware) rather than through datasets' json
builder, which gives up on the whole file at the first broken line: a broken line becomes a bad
row with its line number. Rows stay plain Python dicts until they are validated, so that one row
with an odd type cannot break Arrow's schema inference for the others.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import UserError
from .file_kind import (
    UTF8_BOM,
    content_kind,
    csv_dialect,
    describe,
    describe_encoding,
    encoding_name,
    is_gzip,
    open_bytes,
    refuse_special,
    special_kind,
    text_encoding,
    to_utf8,
)
from .errors import BROKEN_JSON, BadRowError
from .split_slices import add_slices, base_names, parse_split

JSON_SUFFIXES = (".jsonl.gz", ".json.gz", ".ndjson.gz", ".jsonl", ".json", ".ndjson")
CSV_SUFFIXES = (".csv.gz", ".csv")
PARQUET_SUFFIXES = (".parquet",)
SUFFIXES = JSON_SUFFIXES + CSV_SUFFIXES + PARQUET_SUFFIXES
SPLIT_WORDS = {"train", "test", "validation", "valid", "val", "dev", "eval", "evaluation"}
DEMO_DATASET = "orpo-dist-demo"  # the preference set bundled in orpo_dist/demo_data (one file per split)
DEMO_DATA_DIR = Path(__file__).resolve().parents[1] / "demo_data"
_SHARD = re.compile(r"[-_.]\d+(-of-\d+)?$")


class RawRow(NamedTuple):
    number: int  # 1-based line number (JSON lines) or row number (everything else)
    where: str  # how to point at it: "line 87", "row 3", "shard-2.jsonl line 5"
    value: dict[str, Any] | BadRowError


@dataclass
class RawSplit:
    name: str
    rows: list[RawRow] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # union of keys, first-seen order
    origin: str = ""
    notes: list[str] = field(default_factory=list)  # e.g. a file whose content is not what its name says

    def add_columns(self, keys) -> None:
        known = set(self.columns)
        self.columns.extend(k for k in keys if k not in known and not known.add(k))


def has_suffix(path: str | Path, suffixes=SUFFIXES) -> bool:
    return str(path).lower().endswith(suffixes)


def load_splits(
    name: str | None, config: str | None = None, wanted: list[str] | None = None, default_split: str = "train",
    ranges: list[str] = (),
) -> dict[str, RawSplit]:
    """Raw rows per split. `wanted`: only read these splits (when present); None = all.
    A single file, or a folder whose file names are not split names, is one split: `default_split`.
    A wanted name, or one of `ranges`, may be a row range of a split, `train[:1535]` (split_slices.py)."""
    raw_splits = _load_splits(name, config, base_names(wanted), parse_split(default_split)[0])
    return add_slices(raw_splits, [*(wanted or []), *ranges])


def _load_splits(name: str | None, config: str | None, wanted: list[str] | None,
                 default_split: str) -> dict[str, RawSplit]:
    if not name:
        raise UserError(
            "no dataset given: set `dataset_name` in the recipe (or --dataset_name) to a Hub id, "
            "a .jsonl/.json/.parquet/.csv file, or a folder"
        )
    hub_name = hub_dataset_name(name)
    if hub_name:
        return _from_hub(hub_name, config, wanted)
    path = local_dataset_path(name)
    if path == DEMO_DATA_DIR and not any(path.glob("*.jsonl")):
        raise UserError(f"the bundled demo set is missing from {path}: reinstall orpo-dist (pip install -e .)")
    refuse_special(path)
    if path.is_file():
        return {default_split: read_file(path, default_split)}
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            return _from_disk(path, wanted)
        return _from_folder(path, wanted, default_split)
    raise UserError(f"dataset {name!r} not found: no such file or folder (relative paths start at {Path.cwd()})")


def local_dataset_path(name: str) -> Path:
    path = Path(os.path.expanduser(name))
    return DEMO_DATA_DIR if name == DEMO_DATASET and not path.exists() else path


def hub_dataset_name(name: str | None) -> str | None:
    """`name` when it can only be a Hub dataset id (no such local file or folder, no file suffix,
    not a path), else None."""
    if not name or name == DEMO_DATASET or local_dataset_path(name).exists():
        return None
    if has_suffix(name) or name.startswith((".", "/", "~")) or name.count("/") > 1:
        return None
    return name


# ---------------------------------------------------------------- local files


def named_kind(path: Path) -> str | None:
    lower = path.name.lower()
    for suffixes, kind in ((JSON_SUFFIXES, "json"), (CSV_SUFFIXES, "csv"), (PARQUET_SUFFIXES, "parquet")):
        if lower.endswith(suffixes):
            return kind
    return None


def read_file(path: Path, split: str, label_file: bool = False) -> RawSplit:
    """Rows of one file, read as what its content is (its name can be wrong: file_kind.py)."""
    raw = RawSplit(split, origin=str(path))
    prefix = f"{path.name} " if label_file else ""
    named = named_kind(path)
    if named is None:
        raise UserError(f"{path}: unsupported file type; use .jsonl, .json, .jsonl.gz, .json.gz, .parquet or .csv")
    if not path.is_file():
        refuse_special(path)
        raise UserError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    content, gzipped = content_kind(path), is_gzip(path)
    codec = text_encoding(path) if content != "parquet" else None
    if codec:
        raw.notes.append(f"{path.name} is {describe_encoding(codec)}, not UTF-8; it was read as "
                         f"{encoding_name(codec)}. Save it as UTF-8 to silence this note")
    kind = {"parquet": "parquet", "json": "json", "empty": named}.get(content) or (
        "csv" if named == "csv" or _looks_like_csv(path) else named)
    if named == "parquet" and content != "parquet":
        if content != "json":
            raise UserError(f"{path} is named .parquet but is not a Parquet file (it holds {describe(content, gzipped)}):"
                            " was it written by another program, or renamed?")
    if kind != named or gzipped != path.name.lower().endswith(".gz"):
        what = "CSV text" + (" (gzip-compressed)" if gzipped else "") if kind == "csv" else describe(content, gzipped)
        raw.notes.append(f"{path.name} holds {what}, not what its "
                         f"name says; it was read as {kind.upper()}{' after unpacking' if gzipped else ''}. Rename it "
                         "to match its content to silence this note")
    {"json": _read_json, "csv": _read_csv, "parquet": _read_parquet}[kind](path, raw, prefix)
    return raw


def _looks_like_csv(path: Path) -> bool:
    """Text that is not JSON, whose first line splits into several cells: a header row."""
    from .file_kind import head_bytes

    first = head_bytes(path).removeprefix(UTF8_BOM).decode("utf-8", "replace").splitlines()[:1]
    return bool(first) and any(first[0].count(d) >= 1 for d in (",", ";", "\t"))


def _read_json(path: Path, raw: RawSplit, prefix: str) -> None:
    try:
        with open_bytes(path) as f:
            data = f.read()
    except (OSError, EOFError) as err:
        raise UserError(f"{path}: cannot read it ({err}); is the file complete?") from None
    data = to_utf8(data, path).removeprefix(UTF8_BOM)
    head = data.lstrip()[:1]
    # A JSON array is read whole whatever the file is called; JSON lines (one object per line) are
    # read line by line, so that a broken line is one bad row.
    named_lines = ".jsonl" in path.name.lower() or ".ndjson" in path.name.lower()
    is_lines = head == b"{" and named_lines
    if head == b"[" and named_lines:
        raw.notes.append(f"{path.name} holds one JSON array, not JSON lines (one object per line); it was read as "
                         "an array. Rename it .json to silence this note")
    if not is_lines and head in (b"[", b"{"):
        try:
            whole = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            if head == b"[":
                raise UserError(
                    f"{path}: not valid JSON ({err}). A JSON array cannot be read past an error; "
                    "fix the file, or write one object per line (.jsonl) so bad lines are skipped"
                ) from None
            whole = None  # several objects: JSON lines in a .json file
        if whole is not None:
            for number, row in enumerate(_records(whole, path), 1):
                _add(raw, number, f"{prefix}row {number}", row)
            return
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except UnicodeDecodeError:
            row = BadRowError(BROKEN_JSON, "not UTF-8 text")
        except json.JSONDecodeError as err:
            row = BadRowError(BROKEN_JSON, f"{err.msg} at column {err.colno}")
        _add(raw, number, f"{prefix}line {number}", row)


def _records(whole: Any, path: Path) -> list:
    """A JSON document as a list of records: an array, a {column: [values]} object, a single
    {"data": [...]}-style wrapper, or one object."""
    if isinstance(whole, list):
        return whole
    if isinstance(whole, dict):
        values = list(whole.values())
        if values and all(isinstance(v, list) for v in values) and len({len(v) for v in values}) == 1:
            if len(values) == 1 and all(isinstance(x, dict) for x in values[0]):
                return values[0]  # {"data": [{...}, ...]}
            keys = list(whole)
            return [dict(zip(keys, items)) for items in zip(*values)]
        return [whole]
    raise UserError(f"{path}: expected JSON objects (one per line, or an array of them), found {type(whole).__name__}")


def _add(raw: RawSplit, number: int, where: str, row: Any) -> None:
    if isinstance(row, dict):
        raw.add_columns(row)
    elif not isinstance(row, BadRowError):
        row = BadRowError(BROKEN_JSON, f"expected a JSON object, got {type(row).__name__}")
    raw.rows.append(RawRow(number, where, row))


def _read_csv(path: Path, raw: RawSplit, prefix: str) -> None:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    opener = gzip.open if is_gzip(path) else open
    wide = text_encoding(path)
    # utf-8-sig: Excel starts its UTF-8 CSV with a byte-order mark, which would else stick to the
    # first column's name ("\ufeffprompt"); the utf-16/utf-32 codecs drop theirs too.
    try:
        with opener(path, "rt", encoding=wide or "utf-8-sig", newline="") as f:
            sample = f.read(64 * 1024)
            f.seek(0)
            reader = csv.DictReader(f, dialect=csv_dialect(sample))
            raw.add_columns(reader.fieldnames or [])
            for number, row in enumerate(reader, 1):
                row.pop(None, None)  # cells beyond the header
                raw.rows.append(RawRow(number, f"{prefix}row {number}", row))
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as err:
        name = encoding_name(wide or "utf-8")
        raise UserError(f"{path}: cannot read it as {name} CSV ({err}); save it as UTF-8 CSV") from None


def _read_parquet(path: Path, raw: RawSplit, prefix: str) -> None:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several unrelated types for a bad file
        raise UserError(f"{path}: cannot read it as Parquet ({err})") from None
    raw.add_columns(table.column_names)
    for number, row in enumerate(table.to_pylist(), 1):
        raw.rows.append(RawRow(number, f"{prefix}row {number}", row))


def _split_name(path: Path) -> str:
    name = path.name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return _SHARD.sub("", name) or name


def _from_folder(folder: Path, wanted: list[str] | None, default_split: str) -> dict[str, RawSplit]:
    files = sorted(
        p
        for p in folder.rglob("*")
        # A pipe named train.jsonl is kept, for read_file to refuse rather than skip it unsaid.
        if (p.is_file() or special_kind(p)) and has_suffix(p)
        and not any(s.startswith(".") for s in p.relative_to(folder).parts)
    )
    if not files:
        raise UserError(
            f"{folder}: no data files found (looked for {', '.join(SUFFIXES)}, or a `save_to_disk` folder)"
        )
    groups: dict[str, list[Path]] = {}
    for p in files:
        groups.setdefault(_split_name(p), []).append(p)
    if not any(name.lower() in SPLIT_WORDS or name in (wanted or []) for name in groups):
        groups = {default_split: files}  # no split names: every file is training data
    splits = {}
    for name, paths in groups.items():
        if wanted is not None and name not in wanted:
            splits[name] = RawSplit(name, origin="(not read)")
            continue
        merged = RawSplit(name, origin=", ".join(str(p.relative_to(folder)) for p in paths))
        for p in paths:
            part = read_file(p, name, label_file=len(paths) > 1)
            merged.rows.extend(part.rows)
            merged.add_columns(part.columns)
            merged.notes.extend(part.notes)
        splits[name] = merged
    return splits


def _from_disk(folder: Path, wanted: list[str] | None) -> dict[str, RawSplit]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as err:
        raise UserError(f"{folder}: looks like a `save_to_disk` folder but does not load ({err})") from None
    return _from_arrow(loaded, str(folder), wanted)


def _from_arrow(loaded, origin: str, wanted: list[str] | None) -> dict[str, RawSplit]:
    import datasets

    if isinstance(loaded, datasets.Dataset):
        loaded = {"train": loaded}
    splits = {}
    for name, ds in loaded.items():
        raw = RawSplit(name, columns=list(ds.column_names), origin=origin)
        if wanted is None or name in wanted:
            raw.rows = [RawRow(i, f"row {i}", row) for i, row in enumerate(ds.to_list(), 1)]
        splits[name] = raw
    return splits


# ---------------------------------------------------------------- the Hub


def _from_hub(name: str, config: str | None, wanted: list[str] | None) -> dict[str, RawSplit]:
    import datasets

    from ..hub_access import cached_on_disk, hub_unreachable, offline

    if not offline(for_datasets=True) and not cached_on_disk(name, "dataset"):
        why = hub_unreachable()  # before the Hub client's own waits and retries, which say nothing
        if why:
            raise UserError(f"dataset {name!r} is not a local file or folder nor in the local Hugging Face cache, and "
                            f"the hub cannot be reached ({why}). Download it once where there is network (`hf "
                            "download REPO --repo-type dataset`), or pass a local .jsonl/.parquet file or folder")
    try:
        loaded = datasets.load_dataset(name, config)
    except ConnectionError as err:
        raise UserError(
            f"dataset {name!r} is not a local file or folder, and the Hub cannot be reached ({err}).\n"
            "  Offline (HF_HUB_OFFLINE=1 or no network): download it once where there is network, "
            "or pass a local .jsonl/.parquet file or a `save_to_disk` folder."
        ) from None
    except Exception as err:  # DatasetNotFoundError, missing config, bad files...
        hint = " Pass --dataset_config NAME to pick a configuration." if "config" in str(err).lower() else ""
        raise UserError(
            f"could not load dataset {name!r} from the Hub: {type(err).__name__}: {err}\n"
            f"  Check the name (or give a local file/folder path).{hint}"
        ) from None
    return _from_arrow(loaded, f"hub:{name}" + (f" ({config})" if config else ""), wanted)
