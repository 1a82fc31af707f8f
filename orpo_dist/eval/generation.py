"""Greedy generations for a few probe prompts (eval/probes.py): the tutorials' verification step."""

from __future__ import annotations

import torch

def render(tokenizer, prompt: str) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    return prompt


@torch.no_grad()
def generate(model, tokenizer, prompts, max_new_tokens: int = 48) -> list[str]:
    device = next(model.parameters()).device
    answers = []
    for prompt in prompts:
        ids = tokenizer(render(tokenizer, prompt), return_tensors="pt", add_special_tokens=False).to(device)
        out = model.generate(
            **ids, max_new_tokens=max_new_tokens, do_sample=False,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        )
        answers.append(tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return answers
