"""HH-RLHF transcripts: `chosen`/`rejected` are whole dialogues "\\n\\nHuman: ...\\n\\nAssistant: ..."
that should share every turn but the final assistant reply. The prompt is that shared part.

Malformed rows seen in the wild (harmless-base test split): an empty reply, transcripts that
differ before the final reply, a reply holding an extra "\\n\\nAssistant:" or "\\n\\nHuman:" turn.
"""

from __future__ import annotations

import re

from .errors import EMPTY_ANSWER, MALFORMED_TRANSCRIPT, BadRowError

_TURN = re.compile(r"\n\n(Human|Assistant):")
ROLES = {"Human": "user", "Assistant": "assistant"}


def looks_like_hh(text) -> bool:
    return isinstance(text, str) and ("\n\nAssistant:" in text or text.lstrip().startswith("Human:"))


def parse_transcript(text: str, which: str) -> list[tuple[str, str]]:
    """[(speaker, text)], Human first and the Assistant's reply last; BadRowError otherwise."""
    stripped = text.lstrip(" \t\r\n")
    if stripped.startswith(("Human:", "Assistant:")):
        text = "\n\n" + stripped  # tolerate a transcript without the leading blank line
    parts = _TURN.split(text)
    if parts[0].strip():
        raise BadRowError(MALFORMED_TRANSCRIPT, f"{which} does not start with '\\n\\nHuman:'")
    turns = list(zip(parts[1::2], parts[2::2]))
    if not any(speaker == "Assistant" for speaker, _ in turns):
        raise BadRowError(MALFORMED_TRANSCRIPT, f"no '\\n\\nAssistant:' in {which}")
    if turns[0][0] != "Human":
        raise BadRowError(MALFORMED_TRANSCRIPT, f"{which} starts with an Assistant turn, not a Human one")
    if turns[-1][0] == "Human":
        raise BadRowError(
            MALFORMED_TRANSCRIPT, f"{which} ends with a Human turn: an extra '\\n\\nHuman:' turn inside the reply"
        )
    return turns


def split_pair(chosen: str, rejected: str) -> tuple[list[dict[str, str]], str, str]:
    """(prompt messages, chosen reply, rejected reply) from two transcripts."""
    turns = {"chosen": parse_transcript(chosen, "chosen"), "rejected": parse_transcript(rejected, "rejected")}
    prompt = turns["chosen"][:-1]
    if prompt != turns["rejected"][:-1]:
        for which, t in turns.items():
            if len(t) > 1 and t[-2][0] == "Assistant":
                raise BadRowError(
                    MALFORMED_TRANSCRIPT, f"the {which} reply holds an extra '\\n\\nAssistant:' turn"
                )
        other = turns["rejected"][:-1]
        first = next((i for i, (a, b) in enumerate(zip(prompt, other)) if a != b), min(len(prompt), len(other)))
        raise BadRowError(
            MALFORMED_TRANSCRIPT,
            f"chosen and rejected differ before the final reply (from turn {first + 1}; "
            f"{len(turns['chosen'])} vs {len(turns['rejected'])} turns)",
        )
    if prompt[-1][0] != "Human":
        raise BadRowError(MALFORMED_TRANSCRIPT, "the final replies follow an Assistant turn, not a Human one")
    messages: list[dict[str, str]] = []
    for index, (speaker, text) in enumerate(prompt):
        if not text.strip():
            raise BadRowError(MALFORMED_TRANSCRIPT, f"turn {index + 1} ({speaker}) is empty")
        if messages and messages[-1]["role"] == ROLES[speaker]:
            # Two turns of one speaker in the shared part (seen in harmless-base): one message,
            # so that templates requiring alternating roles accept it.
            messages[-1]["content"] += "\n\n" + text.strip()
        else:
            messages.append({"role": ROLES[speaker], "content": text.strip()})
    replies = {}
    for which, t in turns.items():
        replies[which] = t[-1][1].strip()
        if not replies[which]:
            raise BadRowError(EMPTY_ANSWER, f"the {which} reply is empty")
    return messages, replies["chosen"], replies["rejected"]
