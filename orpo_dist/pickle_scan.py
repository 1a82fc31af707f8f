"""Refuse a pickle that would call anything but what model and checkpoint files hold, before any
library loads it.

torch.load's weights_only guard stops a payload in rng_state.pth, optimizer.pt or a
pytorch_model.bin, but as an UnpicklingError traceback; DeepSpeed's *_states.pt
(weights_only=False) and a sharded FSDP checkpoint's .metadata (plain pickle.load) have no guard at
all, and would run it. So every pickle in a checkpoint or model folder is read here first, opcode
by opcode without executing one, and each global it names is checked against what these files
legitimately hold (torch's tensor rebuilders and storages, numpy arrays, DeepSpeed's and torch
distributed checkpoint's records, plain containers). No heavy imports.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
import zlib
from pathlib import Path

from .errors import UserError

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")
DCP_METADATA = ".metadata"  # torch.distributed.checkpoint's index, a plain pickle
DCP_SHARD_SUFFIX = ".distcp"
NEVER_LOADED = {"training_args.bin"}  # the Trainer writes it for people to read; nothing here loads it

# Modules whose callables model and checkpoint pickles legitimately name.
ALLOWED_MODULES = ("torch", "numpy", "deepspeed", "collections", "datetime", "accelerate", "transformers",
                   "peft", "argparse", "enum", "copyreg", "_codecs")
# ... except those that load, compile or run things, which no weights file needs.
REFUSED_MODULES = ("torch.serialization", "torch.hub", "torch.package", "torch.jit", "torch.utils.cpp_extension",
                   "torch._inductor", "torch._dynamo", "torch.compiler", "torch.ops", "torch._ops",
                   "torch.distributed.rpc", "torch.multiprocessing", "numpy.testing", "numpy.distutils",
                   "numpy.f2py", "transformers.trainer", "transformers.pipelines", "transformers.dynamic_module_utils",
                   "accelerate.commands")
ALLOWED_BUILTINS = {"set", "frozenset", "slice", "range", "complex", "bytearray", "bytes", "str", "int", "float",
                    "bool", "tuple", "list", "dict", "object"}
# Verbs no rebuilder of tensors or records has in its name (a second fence inside allowed modules).
REFUSED_WORDS = ("eval", "exec", "system", "popen", "spawn", "import", "load", "save", "write", "remove", "unlink",
                 "rmtree", "rename", "open", "run", "call", "compile", "kill", "fork", "getattr", "setattr")
# Named exactly, in modules (or with names) the fences above refuse: torch's rebuilders of a storage
# and a layout; the paths torch.distributed.checkpoint records.
EXACT_ALLOWED = {("torch.storage", "_load_from_bytes"), ("torch.serialization", "_get_layout"),
                 *(("pathlib", n) for n in ("Path", "PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"))}


def _allowed(module: str, name: str) -> bool:
    if (module, name) in EXACT_ALLOWED:
        return True
    if "." in name:  # a dotted name walks from an allowed module into any other (torch -> os.remove)
        return False
    if module in ("builtins", "__builtin__"):
        return name in ALLOWED_BUILTINS
    if any(module == m or module.startswith(m + ".") for m in REFUSED_MODULES):
        return False
    if any(word in name.lower() for word in REFUSED_WORDS):
        return False
    return any(module == m or module.startswith(m + ".") for m in ALLOWED_MODULES)


def pickle_globals(data: bytes, streams: int = 1) -> list[tuple[str, str]]:
    """Every (module, name) the first `streams` pickles in `data` import, found without running them
    (torch's legacy format is five pickles in a row, then raw storage bytes)."""
    found: list[tuple[str, str]] = []
    source = io.BytesIO(data)
    for number in range(streams):
        if source.tell() >= len(data):
            break
        try:
            found += _stream_globals(source)
        except ValueError:
            if number == 0:
                raise
            break  # past the pickles: the raw bytes that follow are not one
    return found


def _stream_globals(source: io.BytesIO) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    strings: list[str] = []  # recent string pushes: STACK_GLOBAL takes module and name from the stack
    memo: dict[int, str] = {}
    try:
        for op, arg, _ in pickletools.genops(source):
            name = op.name
            if name in ("GLOBAL", "INST"):
                module, attr = str(arg).split(" ", 1) if " " in str(arg) else (str(arg), "")
                found.append((module, attr))
            elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
                          "SHORT_BINSTRING"):
                strings.append(str(arg))
            elif name == "MEMOIZE" and strings:
                memo[len(memo)] = strings[-1]
            elif name in ("PUT", "BINPUT", "LONG_BINPUT") and strings:
                memo[int(arg)] = strings[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET") and int(arg) in memo:
                strings.append(memo[int(arg)])
            elif name == "STACK_GLOBAL":
                found.append((strings[-2], strings[-1]) if len(strings) >= 2 else ("?", "?"))
            elif name in ("REDUCE", "BUILD", "OBJ", "NEWOBJ", "NEWOBJ_EX") and not found:
                found.append(("?", "?"))  # a call with no global named: not something weights hold
    except Exception as err:  # noqa: BLE001 - a stream pickletools cannot walk is not one we load
        raise ValueError(f"not a readable pickle ({type(err).__name__}: {err})") from None
    return found


LEGACY_TORCH_PICKLES = 5  # magic number, protocol, system info, the object, its storage keys


def _streams(path: Path) -> list[tuple[str, bytes, int]]:
    """(where, bytes, how many pickles in a row) of every pickle stream `path` holds."""
    if zipfile.is_zipfile(path):  # torch.save's format: the pickle is archive/data.pkl
        with zipfile.ZipFile(path) as archive:
            return [(f"{path.name}:{n}", archive.read(n), 1) for n in archive.namelist() if n.endswith(".pkl")]
    if path.name == DCP_METADATA or path.suffix in (".pkl", ".pickle"):
        return [(path.name, path.read_bytes(), 1)]
    with open(path, "rb") as f:  # a legacy torch.save: its pickles come first, the storages after
        head = f.read(64 << 20)
    return [(path.name, head, LEGACY_TORCH_PICKLES)] if head else []


def _dcp_streams(folder: Path) -> list[tuple[str, bytes, int]]:
    """The torch.save'd objects a DCP checkpoint keeps inside its .distcp shards (optimizer settings),
    located through its already-checked .metadata."""
    import pickle

    metadata = pickle.loads((folder / DCP_METADATA).read_bytes())  # its globals were checked just before
    streams = []
    for index, info in (getattr(metadata, "storage_data", None) or {}).items():
        path = folder / str(getattr(info, "relative_path", ""))
        offset, length = int(getattr(info, "offset", 0)), int(getattr(info, "length", 0))
        if path.suffix != DCP_SHARD_SUFFIX or not path.is_file() or length <= 0:
            continue
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read(length)
        if chunk[:2] == b"PK":  # a torch.save'd object; raw tensor bytes hold no pickle
            with zipfile.ZipFile(io.BytesIO(chunk)) as archive:
                streams += [(f"{path.name}@{offset}:{n}", archive.read(n), 1) for n in archive.namelist()
                            if n.endswith(".pkl")]
    return streams


CHECKPOINT_FIX = ("Resume from another checkpoint (--resume_from_checkpoint), or start anew in a new "
                  "--output_dir")
MODEL_FIX = "Use the model's safetensors files (save_pretrained's default), from a source you trust"


def check_pickles(folder: str | Path, fix: str, recursive: bool = False) -> None:
    """Refuse, in one UserError naming the file and ending with `fix`, any pickle in `folder` (and
    below, if `recursive`) that names a callable weights and checkpoints never hold."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        return
    files = sorted(p for p in (folder.rglob("*") if recursive else folder.iterdir()) if p.is_file() and p.name not in NEVER_LOADED and (p.suffix in PICKLE_SUFFIXES or p.name == DCP_METADATA))
    for path in files:
        try:
            streams = _streams(path)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:  # a torch zip with a bad CRC, cut short
            raise UserError(f"{path} could not be read ({type(err).__name__}: {err}): it is damaged. {fix}") from None
        if path.name == DCP_METADATA:
            _check(path, streams, fix)
            try:
                streams = _dcp_streams(path.parent)
            except Exception as err:  # noqa: BLE001
                raise UserError(f"{path} could not be read ({type(err).__name__}): it is damaged. {fix}") from None
        _check(path, streams, fix)


def _check(path: Path, streams: list[tuple[str, bytes, int]], fix: str) -> None:
    for where, data, count in streams:
        try:
            named = pickle_globals(data, count)
        except ValueError as err:
            raise UserError(f"{path} is refused: {err}; it is damaged or not what its name says. {fix}") from None
        bad = [f"{m}.{n}" for m, n in named if not _allowed(m, n)]
        if bad:
            raise UserError(
                f"{path} is refused: its pickle ({where}) would call {bad[0]} when loaded, which no weights or "
                f"checkpoint file holds, so it may run code; orpo-dist loaded nothing from it. {fix}")
