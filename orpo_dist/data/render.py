"""Pairs -> the prompt/chosen/rejected strings the trainer tokenizes (data/tokenize.py).

With a chat template the prompt is rendered with add_generation_prompt=True and each answer is the
rendered assistant turn, end-of-turn token included (TRL's own `apply_chat_template`, a stable part
of TRL). Without one, string prompts pass through verbatim and message lists become "Role: content"
text. `render_example` renders a row in TRL's own preference formats the way TRL's trainers do,
for datasets handed to the trainer directly (not through prepare_datasets).
"""

from __future__ import annotations

from .formats import Pair
from .errors import TEMPLATE_FAILED, BadRowError


class Renderer:
    def __init__(self, tokenizer, apply_chat_template: bool = True):
        self.tokenizer = tokenizer
        self.use_template = bool(
            apply_chat_template and tokenizer is not None and getattr(tokenizer, "chat_template", None)
        )
        self.name = "chat template" if self.use_template else "plain text"

    def __call__(self, pair: Pair) -> tuple[str, str, str]:
        if self.use_template:
            return self._template(pair)
        if isinstance(pair.prompt, str):
            return pair.prompt, pair.chosen, pair.rejected
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in pair.prompt]
        return "\n\n".join(lines) + "\n\nAssistant:", " " + pair.chosen, " " + pair.rejected

    def _template(self, pair: Pair) -> tuple[str, str, str]:
        from trl.data_utils import apply_chat_template

        prompt = pair.prompt
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        example = {
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": pair.chosen}],
            "rejected": [{"role": "assistant", "content": pair.rejected}],
        }
        try:
            out = apply_chat_template(example, self.tokenizer)
        except Exception as err:  # jinja raise_exception(), role checks of strict templates, ...
            raise BadRowError(TEMPLATE_FAILED, f"{type(err).__name__}: {str(err)[:200]}") from None
        return out["prompt"], out["chosen"], out["rejected"]


def render_example(example: dict, tokenizer) -> dict:
    """A row of TRL's preference formats (standard or conversational, explicit or implicit prompt)
    as prompt/chosen/rejected strings, as TRL's trainers render it (`maybe_extract_prompt`, then
    `maybe_apply_chat_template`): string rows pass through unchanged."""
    from trl.data_utils import maybe_apply_chat_template, maybe_extract_prompt

    example = maybe_extract_prompt(example)
    return maybe_apply_chat_template(example, tokenizer)
