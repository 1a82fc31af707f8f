"""A byte-level BPE tokenizer (GPT-2 style: SmolLM2, Llama 3, Qwen2) as GGUF tokenizer metadata.

What llama.cpp needs: every token in id order with its type, the merges, the pre-tokenizer's
name (llama.cpp keeps the split regexes itself, by name), the special token ids, whether BOS/EOS
are added, and the chat template. The pre-tokenizer is recognised from tokenizer.json's structure;
one we do not recognise is refused, because a wrong name tokenises text differently, silently.
"""

from __future__ import annotations

import json
import tempfile

import gguf
from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

from ..errors import UserError

HINT = "convert the merged folder (--merge) with llama.cpp's convert_hf_to_gguf.py instead"


def _byte_level(node: dict, use_regex: bool) -> bool:
    return (node.get("type") == "ByteLevel" and bool(node.get("use_regex", True)) == use_regex
            and not node.get("add_prefix_space", False))


def _split_regex(node: dict) -> str | None:
    if node.get("type") == "Split" and node.get("behavior") == "Isolated" and not node.get("invert", False):
        return (node.get("pattern") or {}).get("Regex")
    return None


def pre_tokenizer_name(tokenizer_json: dict) -> str:
    """llama.cpp's name (`tokenizer.ggml.pre`) for this tokenizer.json's pre-tokenizer."""
    model = tokenizer_json.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        kind = "sentencepiece-style BPE" if model.get("byte_fallback") else f"{model.get('type')}"
        raise UserError(f"GGUF export writes byte-level BPE tokenizers (GPT-2 style), not a {kind} one; {HINT}")
    if tokenizer_json.get("normalizer") is not None:
        raise UserError(
            f"this tokenizer normalises text first ({tokenizer_json['normalizer'].get('type')}), which a GGUF "
            f"tokenizer does not record; {HINT}"
        )
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    if len(steps) == 1 and _byte_level(steps[0], use_regex=True):
        return "gpt-2"
    if len(steps) == 2 and _byte_level(steps[1], use_regex=True) and steps[0].get("type") == "Digits" \
            and steps[0].get("individual_digits"):
        return "smollm"  # SmolLM's own tokenizer.json: digits one by one, then GPT-2's split
    if len(steps) == 2 and _byte_level(steps[1], use_regex=False) and (regex := _split_regex(steps[0])):
        for name in ("llama-bpe", "qwen2"):
            if regex == GGUF_PRE_TOKENIZER_SPLITS[name]:
                return name
    raise UserError(
        f"GGUF export does not recognise this tokenizer's pre-tokenizer ({json.dumps(pre)[:120]}...): "
        f"llama.cpp needs its name to split text the same way; {HINT}"
    )


def token_table(tokenizer, vocab_size: int) -> tuple[list[str], list[int]]:
    """Tokens in id order and their llama.cpp types; rows past the tokenizer are unused padding."""
    by_id = {i: token for token, i in tokenizer.get_vocab().items()}
    if by_id and max(by_id) >= vocab_size:
        raise UserError(
            f"the tokenizer has token id {max(by_id)} but the model's embedding has only {vocab_size} rows: "
            "resize the embeddings before exporting"
        )
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def added_specials(tokenizer) -> tuple[bool, bool]:
    """(adds BOS, adds EOS), measured on the tokenizer rather than read from its config."""
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    full = tokenizer("x")["input_ids"]
    add_bos = len(full) > len(plain) and tokenizer.bos_token_id is not None and full[0] == tokenizer.bos_token_id
    add_eos = len(full) > len(plain) and tokenizer.eos_token_id is not None and full[-1] == tokenizer.eos_token_id
    return add_bos, add_eos


def check_tokenizer(tokenizer) -> str:
    """The llama.cpp pre-tokenizer name for this tokenizer, or a UserError saying why it is not covered."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UserError(f"GGUF export needs a fast (tokenizers) tokenizer, not {type(tokenizer).__name__}; {HINT}")
    return pre_tokenizer_name(json.loads(backend.to_str()))


def add_tokenizer(writer: gguf.GGUFWriter, tokenizer, vocab_size: int) -> str:
    """Write the tokenizer metadata; returns the pre-tokenizer name written."""
    pre = check_tokenizer(tokenizer)
    tokens, types = token_table(tokenizer, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_add_space_prefix(False)
    # gguf's SpecialVocab reads merges and special ids from a saved tokenizer folder.
    with tempfile.TemporaryDirectory(prefix="orpo-dist-tokenizer-") as folder:
        tokenizer.save_pretrained(folder)
        special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=vocab_size)
    if not special.merges:
        raise UserError("the tokenizer has no BPE merges to write; it cannot be exported as a GGUF tokenizer")
    special.add_special_token["bos"], special.add_special_token["eos"] = added_specials(tokenizer)
    special.chat_template = tokenizer.chat_template
    special.add_to_gguf(writer, quiet=True)
    return pre
