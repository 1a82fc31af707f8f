"""The HF chat template as an Ollama (Go text/template) TEMPLATE, when we can do so exactly.

Jinja cannot be translated to Go templates in general. We recognise the ChatML family instead
(SmolLM2, Qwen, many fine-tunes): render the HF template on probe conversations and check every
rendering equals ChatML's, with or without a default system prompt inserted when the first
message is not a system one. Only then do we write the Go template of that same rule; for any
other template we say so, and Ollama falls back on the GGUF's own `tokenizer.chat_template`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

IM_START, IM_END = "<|im_start|>", "<|im_end|>"

# Multi-turn, with and without a system message; content with newlines, quotes, non-ASCII.
PROBES = (
    [{"role": "user", "content": "U1"}],
    [{"role": "system", "content": "S1"}, {"role": "user", "content": "U1"}],
    [{"role": "user", "content": "Héllo,\n\"wörld\" ✓"}, {"role": "assistant", "content": "A1\n\nA1b"},
     {"role": "user", "content": "U2 {{ .x }}"}],
    [{"role": "system", "content": "S1"}, {"role": "user", "content": "U1"},
     {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"}],
)


@dataclass(frozen=True)
class ChatML:
    """ChatML turns; `default_system` is inserted before a first message that is not a system one."""

    default_system: str | None = None
    end_of_turn: str = IM_END

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        out = []
        for i, message in enumerate(messages):
            if i == 0 and self.default_system is not None and message["role"] != "system":
                out.append(f"{IM_START}system\n{self.default_system}{IM_END}\n")
            out.append(f"{IM_START}{message['role']}\n{message['content']}{IM_END}\n")
        if add_generation_prompt:
            out.append(f"{IM_START}assistant\n")
        return "".join(out)

    def go_template(self) -> str:
        """The same rule for Ollama: `.Messages` holds every turn, the system prompt included."""
        default = ""
        if self.default_system is not None:
            default = ('{{- if and (eq $i 0) (ne $m.Role "system") }}'
                       f"{IM_START}system\n{self.default_system}{IM_END}\n{{{{ end }}}}")
        return ("{{- range $i, $m := .Messages -}}\n" + default
                + f"{IM_START}{{{{ $m.Role }}}}\n{{{{ $m.Content }}}}{IM_END}\n{{{{ end }}}}{IM_START}assistant\n")


def render_hf(tokenizer, messages: list[dict]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def detect_chatml(tokenizer) -> tuple[ChatML | None, str]:
    """(ChatML rule that reproduces the tokenizer's template, "") or (None, why not)."""
    if not getattr(tokenizer, "chat_template", None):
        return None, "the tokenizer has no chat template"
    vocab = tokenizer.get_vocab()
    if IM_START not in vocab or IM_END not in vocab:
        return None, f"the chat template is not ChatML ({IM_START}/{IM_END} are not tokens)"
    try:
        first = render_hf(tokenizer, PROBES[0])
        plain = ChatML().render(PROBES[0])
        match = re.fullmatch(re.escape(f"{IM_START}system\n") + r"(.*)" + re.escape(IM_END + "\n" + plain),
                             first, flags=re.S)
        chat = ChatML(match.group(1)) if match and first != plain else ChatML()
        for probe in PROBES:
            if render_hf(tokenizer, probe) != chat.render(probe):
                return None, "the chat template renders conversations differently from ChatML"
    except Exception as err:  # a template may raise on any probe (e.g. no system role)
        return None, f"the chat template could not be checked against ChatML ({type(err).__name__}: {err})"
    if chat.default_system is not None and any(s in chat.default_system for s in ("{{", "}}", '"""')):
        return None, "its default system prompt contains Go-template or Modelfile delimiters"
    return chat, ""
