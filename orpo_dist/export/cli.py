"""`orpo-dist export RUN [--merge] [--gguf f16|q8_0] [--out DIR]`: take a run's model elsewhere.

--merge        an HF folder (safetensors, tokenizer, chat template) with the LoRA adapter merged
               into the base weights; QLoRA adapters are merged into the unquantised base, in the
               run's float dtype (bf16/fp16 on GPUs, fp32 on a CPU). Full fine-tunes are written as saved.
--gguf TYPE    a GGUF file for llama.cpp (llama, mistral and qwen2 architectures; f16 or q8_0)
               and an Ollama Modelfile beside it: `ollama create NAME -f OUT/Modelfile`.

Output goes to --out (default: RUN/export/); every file appears only once complete.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import UserError
from ..atomic import ensure_writable, write_text
from .manifest import check_targets, record

MERGED_FOLDER = "merged"
MODELFILE = "Modelfile"


def log(message: str) -> None:
    print(f"orpo-dist: {message}", flush=True)


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def export_run(run_dir: str | Path, merge: bool = False, gguf_type: str | None = None,
               out: str | Path | None = None, name: str | None = None, progress: bool = True) -> dict:
    """Write what was asked; returns {"out": ..., "files": {path: bytes}, "seconds": {...}, "note": ...}."""
    from .architectures import gguf_arch
    from .gguf_vocab import check_tokenizer
    from .gguf_writer import check_gguf_type
    from .source import inspect_run, load_tokenizer, model_config

    if not merge and gguf_type is None:
        raise UserError("nothing to export: pass --merge (HF folder) and/or --gguf f16|q8_0 (GGUF + Modelfile)")
    if gguf_type is not None:
        check_gguf_type(gguf_type)
    if name is not None and ("/" in name or name.startswith(".") or not name.strip()):
        raise UserError(f"--name {name!r} must be a plain file name (no '/', not starting with '.')")
    source = inspect_run(run_dir)
    from ..run_lock import training_note

    if note := training_note(source.run_dir):
        log(note)
    name = name or source.name
    out = ensure_writable(Path(out) if out else source.run_dir / "export")
    targets = ([MERGED_FOLDER] if merge else []) + ([gguf_name(name, gguf_type), MODELFILE] if gguf_type else [])
    replaced = check_targets(out, targets)  # before the (possibly long) merge, not after it
    if gguf_type is not None:
        gguf_arch(model_config(source))
    tokenizer = load_tokenizer(source)
    if gguf_type is not None:
        check_tokenizer(tokenizer)
    for item in replaced:
        log(f"replacing {out / item} (written by an earlier export)")

    from .merge import load_merged, write_merged

    result = {"out": str(out), "kind": source.kind, "files": {}, "seconds": {}, "note": ""}
    start = time.perf_counter()
    log(f"loading the {source.kind} model of {source.run_dir}" + (" and merging its adapter" if source.is_adapter else ""))
    model = load_merged(source)
    result["seconds"]["load_and_merge"] = time.perf_counter() - start
    if merge:
        start = time.perf_counter()
        folder = write_merged(model, tokenizer, out / MERGED_FOLDER)
        record(out, [MERGED_FOLDER])
        result["seconds"]["merged_folder"] = time.perf_counter() - start
        result["files"][str(folder)] = _size(folder)
    if gguf_type is not None:
        from .gguf_writer import write_gguf
        from .modelfile import modelfile_text

        start = time.perf_counter()
        gguf_path = out / gguf_name(name, gguf_type)
        summary = write_gguf(model, tokenizer, gguf_path, gguf_type, name, progress=progress)
        result["seconds"]["gguf"] = time.perf_counter() - start
        result["files"][str(gguf_path)] = summary["bytes"]
        text, note = modelfile_text(gguf_path.name, tokenizer, getattr(model, "generation_config", None))
        write_text(out / MODELFILE, text)
        record(out, [gguf_path.name, MODELFILE])
        result["files"][str(out / MODELFILE)] = _size(out / MODELFILE)
        result["note"] = note
        result["gguf"] = summary
    return result


def gguf_name(name: str, gguf_type: str) -> str:
    return f"{name}-{gguf_type}.gguf"


def format_result(result: dict) -> str:
    lines = [f"exported to {result['out']}"]
    for path, size in result["files"].items():
        lines.append(f"  {path}  ({size / 2**20:.1f} MiB)")
    lines.append("  time: " + ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in result["seconds"].items()))
    if result.get("note"):
        lines.append(f"  note: {result['note']}")
    if "gguf" in result:
        lines.append(f"  Ollama: ollama create NAME -f {Path(result['out']) / MODELFILE}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="orpo-dist export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="output folder of an orpo-dist run (holds recipe.yaml and the model)")
    parser.add_argument("--merge", action="store_true", help=f"write an HF folder OUT/{MERGED_FOLDER}/ with the adapter merged")
    parser.add_argument("--gguf", metavar="TYPE", help="also write OUT/NAME-TYPE.gguf and OUT/Modelfile; TYPE is f16 or q8_0")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: RUN_DIR/export)")
    parser.add_argument("--name", help="model name in the GGUF and its file name (default: the run folder's name)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar while writing the GGUF")
    args = parser.parse_args(argv)
    result = export_run(args.run_dir, args.merge, args.gguf, args.out, args.name, progress=not args.no_progress)
    print(format_result(result))
    return 0
