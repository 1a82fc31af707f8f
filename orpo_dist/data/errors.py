"""What is wrong with data: a bad row's reason (BadRowError, raised by the per-row converters)
and data that cannot train at all (DataUnusable). Pure Python: the format table and the recipe
check import it."""

from __future__ import annotations

from ..errors import UserError

# Reason categories, in the order they are listed in summaries.
BROKEN_JSON = "broken JSON"
MISSING_VALUE = "missing value"
NON_STRING = "non-string answer"
NON_STRING_PROMPT = "non-string prompt"
EMPTY_ANSWER = "empty answer"
EMPTY_PROMPT = "empty prompt"
IDENTICAL = "identical answers"
BAD_MESSAGES = "bad messages"
MALFORMED_TRANSCRIPT = "malformed transcript"
TEMPLATE_FAILED = "chat template failed"
PROMPT_TOO_LONG = "prompt too long"
TOKENIZATION = "tokenization mismatch"

STRICT_LIST = 20  # bad rows listed in a --dataset_strict error


class DataUnusable(UserError):
    """The data cannot train as given (missing column, no good row, strict mode with bad rows).
    `orpo-dist data check` exits 1 on these; everywhere else they are ordinary UserErrors."""


class BadRowError(Exception):
    """Raised inside the per-row converters; turned into a BadRow by the caller."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
