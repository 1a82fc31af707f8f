"""Prepared data, once per node and cached: what a run trains on, keyed by everything that makes it.

Preparing a dataset (read, check every row, render, tokenize) takes minutes at 100k+ pairs. The
main process of each node does it (train.py runs this under `main_process_first(local=True)`)
and writes the result into the `datasets` cache (HF_DATASETS_CACHE/orpo-dist/KEY): the tokenized
training and held-out pairs as Arrow files, the held-out pairs as heldout.jsonl writes them, and
the lines preparation logged. The node's other ranks, then a resumed, requeued or repeated run,
load it memory-mapped in seconds: memory per rank does not grow with the number of rows.

The key is a hash of the data's content (every file of a local source, byte for byte; for a Hub
dataset the fingerprints `datasets` gives its cached splits), every data field of the recipe,
the token-length fields and the seed, the tokenizer (vocabulary, chat template, special tokens)
and the source of the code that prepares (this package's data layer), so any change prepares
again. A folder is written aside and renamed into place whole, so two nodes sharing a cache
never see each other's half.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from ..errors import UserError
from ..model_rules import DEFAULT_MAX_LENGTH
from .prepare import prepare_datasets
from .errors import BadRowError
from .tokenize import TOKEN_COLUMNS, pair_tokens, refuse_rows, tokenize_pairs

FORMAT = 1  # of the folder below; bumped when its layout changes
TRAIN, EVAL, HELDOUT, LOG, COMPLETE = "train.arrow", "eval.arrow", "heldout.jsonl", "log.json", "COMPLETE"
_INT8 = ("prompt_attention_mask", "chosen_attention_mask", "rejected_attention_mask")
_CODE = ("data", "orpo/datasets.py")  # what prepares, relative to the package
# Libraries whose code renders and tokenizes (chat templates: trl and jinja2; tokenizers).
_LIBRARIES = ("datasets", "jinja2", "tokenizers", "transformers", "trl")
_BATCH = 1024  # pairs tokenized and written at a time


@dataclasses.dataclass
class CachedData:
    train: Any  # datasets.Dataset: the token columns and the length column, memory-mapped
    eval: Any | None
    folder: Path
    heldout_file: Path | None  # prompt/chosen/rejected(/category) per held-out pair, heldout.jsonl's lines


def cache_root() -> Path:
    import datasets

    return Path(datasets.config.HF_DATASETS_CACHE) / "orpo-dist"


def _file_digest(path: Path, into) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            into.update(block)


def source_fingerprint(name: str, config: str | None) -> str:
    """What the data is: the content of a local file or folder, or the Hub dataset's cached splits."""
    from .sources import hub_dataset_name, local_dataset_path

    digest = hashlib.sha256()
    hub = hub_dataset_name(name)
    if hub:
        import datasets

        try:
            loaded = datasets.load_dataset(hub, config)  # from the local cache once downloaded
        except Exception as err:  # noqa: BLE001 - offline, a missing config, bad files: the user's to fix
            raise UserError(f"could not load dataset {hub!r}: {type(err).__name__}: {err}. Check the name, or "
                            "download it once where there is network, or pass a local file or folder") from None
        for split in sorted(loaded):
            digest.update(f"{split}:{loaded[split]._fingerprint}\n".encode())
        return f"hub:{hub}:{config}:{digest.hexdigest()}"
    path = local_dataset_path(name)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    for file in files:
        digest.update(f"{file.relative_to(path) if file != path else file.name}\n".encode())
        _file_digest(file, digest)
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    digest.update(backend.to_str().encode() if backend is not None else json.dumps(tokenizer.get_vocab(),
                                                                                        sort_keys=True).encode())
    digest.update(json.dumps([tokenizer.chat_template, tokenizer.all_special_tokens, tokenizer.bos_token_id,
                              tokenizer.eos_token_id, tokenizer.pad_token_id], default=str).encode())
    return digest.hexdigest()


def code_fingerprint() -> str:
    """The source that prepares (this package's data layer) and the versions of the libraries it calls."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256(json.dumps([_version(name) for name in _LIBRARIES]).encode())
    for part in _CODE:
        for file in sorted((package / part).rglob("*.py")) if (package / part).is_dir() else [package / part]:
            digest.update(file.read_bytes())
    return digest.hexdigest()


def _version(name: str) -> str:
    try:
        return f"{name} {importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{name} none"


def cache_key(data_args, tokenizer, training) -> str:
    fields = {
        "format": FORMAT,
        "data": dataclasses.asdict(data_args),
        "lengths": [training.max_length, training.max_prompt_length, training.max_completion_length,
                    DEFAULT_MAX_LENGTH],
        "seed": training.seed,
        "length_column": training.length_column_name,
        "source": source_fingerprint(str(data_args.dataset_name), data_args.dataset_config),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "code": code_fingerprint(),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:32]


def load_or_prepare(data_args, tokenizer, training, log: Callable[[str], Any], prepares: bool = True) -> CachedData:
    """The prepared data from the cache, or prepared now (prepare.prepare_datasets) and cached.
    Each node's main process prepares while its other ranks wait (train.py), so they find it here;
    `prepares=False` (those ranks) never prepares: with no complete folder, the node's main process
    failed (its error says why), and preparing again on every rank would only repeat it."""
    started = time.time()
    folder = cache_root() / cache_key(data_args, tokenizer, training)
    if (folder / COMPLETE).is_file():
        lines = json.loads((folder / LOG).read_text())
        for line in lines:
            log(line)
        data = _load(folder)
        log(f"data: prepared earlier for this data, tokenizer and recipe: loaded from {folder} "
            f"in {time.time() - started:.1f} s")
        return data
    if not prepares:
        raise UserError(f"the prepared data is not in {folder}: this node's main process did not finish preparing it "
                        "(its own error says why)")
    lines: list[str] = []

    def log_and_keep(line: str) -> None:
        lines.append(line)
        log(line)

    prepared = prepare_datasets(data_args, tokenizer, training.max_length, training.seed, log=log_and_keep,
                                max_prompt_length=training.max_prompt_length,
                                max_completion_length=training.max_completion_length)
    try:
        _write(folder, prepared, tokenizer, training, lines)
    except OSError as err:
        raise UserError(f"cannot write the prepared data to {folder.parent}: {err.strerror or err}. Free some space "
                        "there, or set HF_DATASETS_CACHE to a writable folder with room (nothing was kept)") from None
    data = _load(folder)
    log(f"data: prepared in {time.time() - started:.0f} s and cached in {folder}")
    return data


def _features(length_column: str):
    from datasets import Features, Sequence, Value

    columns = {c: Sequence(Value("int8" if c in _INT8 else "int32")) for c in TOKEN_COLUMNS}
    return Features({**columns, length_column: Value("int32")})


def _write_tokenized(path: Path, dataset, tokenizer, training, name: str) -> None:
    from datasets.arrow_writer import ArrowWriter

    column = training.length_column_name
    max_length = training.max_length if training.max_length is not None else 512
    refused = []
    with ArrowWriter(features=_features(column), path=str(path)) as writer:
        for start in range(0, len(dataset), _BATCH):
            part = dataset[start:start + _BATCH]
            triples = list(zip(part["prompt"], part["chosen"], part["rejected"]))
            batch = {key: [] for key in (*TOKEN_COLUMNS, column)}
            for i, result in enumerate(tokenize_pairs(tokenizer, triples, max_length, training.max_prompt_length,
                                                      training.max_completion_length)):
                if isinstance(result, BadRowError):
                    refused.append((start + i, str(result)))
                    continue
                for key in TOKEN_COLUMNS:
                    batch[key].append(result.row[key])
                batch[column].append(pair_tokens(result.row["chosen_input_ids"], result.row["rejected_input_ids"]))
            writer.write_batch(batch)
        writer.finalize()
    refuse_rows(refused, len(dataset), name)


def _write(folder: Path, prepared, tokenizer, training, lines: list[str]) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Unique across the nodes that may share this cache (containers reuse pids).
    work = folder.parent / f".{folder.name}.{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        _write_tokenized(work / TRAIN, prepared.train, tokenizer, training, "training")
        if prepared.eval is not None:
            _write_tokenized(work / EVAL, prepared.eval, tokenizer, training, "eval")
            with open(work / HELDOUT, "w", encoding="utf-8") as f:
                for row in prepared.heldout_rows():
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        (work / LOG).write_text(json.dumps(lines))
        (work / COMPLETE).write_text("")
        if folder.is_dir() and not (folder / COMPLETE).is_file():
            shutil.rmtree(folder, ignore_errors=True)  # not ours to keep: no preparation finished it
        try:
            os.rename(work, folder)
        except OSError:  # another node's main process, sharing this cache, finished first: same content
            if not (folder / COMPLETE).is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _load(folder: Path) -> CachedData:
    from datasets import Dataset

    has_eval = (folder / EVAL).is_file()
    return CachedData(Dataset.from_file(str(folder / TRAIN)),
                      Dataset.from_file(str(folder / EVAL)) if has_eval else None, folder,
                      folder / HELDOUT if has_eval else None)
