"""Which files in an export folder orpo-dist wrote: a user's files there are never replaced.

`orpo-dist export` records what it writes in OUT/.orpo-dist-export.json (each name, and for the
merged folder the files inside it). Before any work, every name the export is about to write is
checked: one recorded by an earlier export is replaced (and the command says so); one that is
not, or a merged folder that holds files an export did not put there, stops the export with the
path and the fix. Everything else in the folder is left alone.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import write_text
from ..errors import UserError

MANIFEST = ".orpo-dist-export.json"


def _read(out: Path) -> dict:
    try:
        data = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return data.get("written", {}) if isinstance(data, dict) else {}


def _contents(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()) if path.is_dir() else []


def check_targets(out: Path, names: list[str]) -> list[str]:
    """Refuse (UserError) if writing `names` into `out` would replace something orpo-dist did not
    write; returns the names an earlier export wrote that this one will replace."""
    written = _read(out)
    replaced = []
    for name in names:
        path = out / name
        if not path.exists() and not path.is_symlink():
            continue
        if name not in written:
            raise UserError(f"{path} exists and was not written by orpo-dist export: move it away or pass another "
                            "--out (nothing was written)")
        if path.is_dir():
            extra = sorted(set(_contents(path)) - set(written[name] or []))
            if extra:
                shown = ", ".join(extra[:4]) + (f" and {len(extra) - 4} more" if len(extra) > 4 else "")
                raise UserError(f"{path} holds files an earlier export did not write ({shown}): replacing the "
                                "folder would delete them. Move them away or pass another --out (nothing was written)")
        replaced.append(name)
    return replaced


def record(out: Path, names: list[str]) -> None:
    """Add `names` (now written in `out`) to the folder's manifest."""
    written = _read(out)
    for name in names:
        path = out / name
        written[name] = _contents(path) if path.is_dir() else None
    write_text(out / MANIFEST, json.dumps({"written": written}, indent=1, sort_keys=True) + "\n")
