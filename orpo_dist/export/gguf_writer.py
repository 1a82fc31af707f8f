"""Write a merged model as a GGUF file with the `gguf` package: its tensor-name map, writer and
quantiser. Tensors are converted and written one at a time (with a progress bar), so memory stays
at the model plus one tensor.

Types follow llama.cpp's converter: 1-D tensors (norms, biases) stay F32; matrices become F16, or
Q8_0 when every row splits into its 32-value blocks (otherwise F16, as llama.cpp falls back).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from pathlib import Path

import gguf
import numpy as np

from ..errors import UserError
from .architectures import HINT, GgufArch, gguf_arch
from ..atomic import partial_path
from .gguf_vocab import add_tokenizer

# --gguf NAME -> (type of the matrices, llama.cpp's file type)
GGUF_TYPES = {
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}


def check_gguf_type(name: str) -> str:
    if name not in GGUF_TYPES:
        raise UserError(f"unknown --gguf type {name!r}: choose {' or '.join(GGUF_TYPES)} "
                        "(q8_0 is about half the size of f16; it rounds each weight to 1/254 of the largest in its block of 32)")
    return name


@dataclass
class TensorPlan:
    name: str         # GGUF name, e.g. blk.0.attn_q.weight
    source: str       # state-dict key
    qtype: gguf.GGMLQuantizationType
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        if self.qtype == gguf.GGMLQuantizationType.F32:
            return prod(self.shape) * 4
        if self.qtype == gguf.GGMLQuantizationType.F16:
            return prod(self.shape) * 2
        return prod(gguf.quant_shape_to_byte_shape(self.shape, self.qtype))


def tensor_type(shape: tuple[int, ...], wanted: gguf.GGMLQuantizationType) -> gguf.GGMLQuantizationType:
    if len(shape) <= 1:
        return gguf.GGMLQuantizationType.F32
    block, _ = gguf.GGML_QUANT_SIZES[wanted]
    return wanted if shape[-1] % block == 0 else gguf.GGMLQuantizationType.F16


def plan_tensors(state_dict: dict, config, spec: GgufArch, wanted) -> list[TensorPlan]:
    names = gguf.get_tensor_name_map(spec.arch, config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    plans, unmapped = [], []
    for key, tensor in state_dict.items():
        if tied and key == "lm_head.weight":
            continue  # llama.cpp reuses token_embd when there is no output.weight
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            unmapped.append(key)
            continue
        shape = tuple(tensor.shape)
        plans.append(TensorPlan(name, key, tensor_type(shape, wanted), shape))
    if unmapped:
        raise UserError(f"GGUF export has no {spec.name} name for the tensors {unmapped[:4]}; {HINT}")
    return plans


def permute_for_rope(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's llama graph pairs rotary dimensions (i, i+1) within a head where transformers
    pairs (i, i + head_dim/2): reorder each head's rows from halves to interleaved pairs."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def tensor_data(plan: TensorPlan, tensor, config, spec: GgufArch) -> np.ndarray:
    data = tensor.detach().float().cpu().numpy()
    if spec.permute_qk and ".attn_q." in plan.name:
        data = permute_for_rope(data, config.num_attention_heads)
    elif spec.permute_qk and ".attn_k." in plan.name:
        data = permute_for_rope(data, config.num_key_value_heads)
    return gguf.quants.quantize(data, plan.qtype)


def head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def rope_theta(config) -> float:
    rope = getattr(config, "rope_parameters", None) or {}
    return float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def add_model_metadata(writer: gguf.GGUFWriter, config, name: str, file_type) -> None:
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_vocab_size(config.vocab_size)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    writer.add_key_length(head_dim(config))
    writer.add_value_length(head_dim(config))
    writer.add_rope_dimension_count(head_dim(config))
    writer.add_rope_freq_base(rope_theta(config))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)


def write_gguf(model, tokenizer, path: Path, gguf_type: str, name: str, progress: bool = True) -> dict:
    """Write `model` (merged, any float dtype) and `tokenizer` to `path`; returns a summary."""
    from tqdm import tqdm

    config = model.config
    spec = gguf_arch(config)
    wanted, file_type = GGUF_TYPES[check_gguf_type(gguf_type)]
    state = model.state_dict()
    plans = plan_tensors(state, config, spec, wanted)
    tmp = partial_path(path)
    writer = gguf.GGUFWriter(tmp, spec.name)
    try:
        add_model_metadata(writer, config, name, file_type)
        pre = add_tokenizer(writer, tokenizer, config.vocab_size)
        for plan in plans:
            # The float type given here only says "not raw bytes": the shape is in elements.
            writer.add_tensor_info(plan.name, plan.shape, np.float32 if plan.qtype == gguf.GGMLQuantizationType.F32
                                   else np.float16, plan.nbytes, raw_dtype=plan.qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        total = sum(p.nbytes for p in plans)
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"GGUF {gguf_type}", disable=not progress) as bar:
            for plan in plans:
                writer.write_tensor_data(tensor_data(plan, state[plan.source], config, spec))
                bar.update(plan.nbytes)
        writer.close()
        tmp.replace(path)
    finally:
        writer.close()
        tmp.unlink(missing_ok=True)
    return {"path": str(path), "type": gguf_type, "architecture": spec.name, "pre_tokenizer": pre,
            "tensors": len(plans), "bytes": path.stat().st_size}
