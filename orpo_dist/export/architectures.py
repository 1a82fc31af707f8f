"""Which models the GGUF writer covers, and why the others are refused.

One entry per transformers `model_type`: the llama.cpp architecture it is written as, and
whether llama.cpp's llama graph wants q/k rows reordered for its rotary embedding (transformers'
GGUF loader and llama.cpp both undo/expect exactly that reordering for the `llama` architecture).
"""

from __future__ import annotations

from dataclasses import dataclass

import gguf

from ..errors import UserError


@dataclass(frozen=True)
class GgufArch:
    model_type: str
    arch: gguf.MODEL_ARCH
    permute_qk: bool

    @property
    def name(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.arch]


SUPPORTED = {
    "llama": GgufArch("llama", gguf.MODEL_ARCH.LLAMA, permute_qk=True),
    # llama.cpp runs Mistral (without sliding-window attention) as a llama.
    "mistral": GgufArch("mistral", gguf.MODEL_ARCH.LLAMA, permute_qk=True),
    "qwen2": GgufArch("qwen2", gguf.MODEL_ARCH.QWEN2, permute_qk=False),
}

HINT = "convert the merged folder (--merge) with llama.cpp's convert_hf_to_gguf.py instead"


def gguf_arch(config) -> GgufArch:
    """The writer's entry for this config, or a UserError saying why it is not covered."""
    model_type = getattr(config, "model_type", None)
    spec = SUPPORTED.get(model_type)
    if spec is None:
        raise UserError(
            f"GGUF export covers the {', '.join(sorted(SUPPORTED))} architectures, not {model_type!r}; {HINT}"
        )
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
    if rope_type not in (None, "default"):
        raise UserError(
            f"GGUF export writes plain rotary embeddings, and this {model_type} model uses rope_type "
            f"{rope_type!r} (e.g. Llama 3.1's frequency table), which it does not write; {HINT}"
        )
    window = getattr(config, "sliding_window", None)
    uses_window = getattr(config, "use_sliding_window", model_type == "mistral")
    if uses_window and window is not None and window < getattr(config, "max_position_embeddings", 0):
        raise UserError(
            f"this {model_type} model attends through a sliding window of {window} tokens, which llama.cpp's "
            f"{spec.name} graph does not apply (answers would change past {window} tokens); {HINT}"
        )
    return spec
