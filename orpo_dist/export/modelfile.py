"""An Ollama Modelfile beside the GGUF: `ollama create NAME -f Modelfile`."""

from __future__ import annotations

import json

from .chat_template import detect_chatml


def stop_tokens(tokenizer, generation_config=None, end_of_turn: str | None = None) -> list[str]:
    """The end-of-turn marker and every token the model or tokenizer calls end-of-sequence."""
    ids = getattr(generation_config, "eos_token_id", None)
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    candidates = [end_of_turn, tokenizer.eos_token, *tokenizer.convert_ids_to_tokens(ids)]
    return list(dict.fromkeys(t for t in candidates if t))


def modelfile_text(gguf_name: str, tokenizer, generation_config=None) -> tuple[str, str]:
    """(Modelfile text, note): note says why there is no TEMPLATE, or is empty."""
    chat, why_not = detect_chatml(tokenizer)
    lines = [
        "# Ollama Modelfile written by `orpo-dist export`.",
        "# Build and run: ollama create NAME -f Modelfile && ollama run NAME",
        f"FROM ./{gguf_name}",
    ]
    if chat is not None:
        lines.append(f'TEMPLATE """{chat.go_template()}"""')
        note = ""
    else:
        note = (f"no TEMPLATE written: {why_not}; Ollama will use the GGUF's tokenizer.chat_template "
                "if it recognises it (check with `ollama show NAME --template`)")
        lines.append(f"# {note}")
    for token in stop_tokens(tokenizer, generation_config, chat.end_of_turn if chat else None):
        lines.append(f"PARAMETER stop {json.dumps(token, ensure_ascii=False)}")
    return "\n".join(lines) + "\n", note
