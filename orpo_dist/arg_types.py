"""Argument types for the command-line flags that take numbers: a value outside its range is refused
as argparse refuses a word where a number belongs (usage, one error line naming the flag, exit 2),
before any work, instead of failing after a run or being passed on to Slurm or a socket."""

from __future__ import annotations

import argparse


def whole(low: int, high: int | None = None):
    """A whole number in [low, high]; the message says the range and what was given."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            wanted = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise argparse.ArgumentTypeError(f"must be a whole number {wanted}, got {value}")
        return value

    parse.__name__ = "whole number"  # argparse's fallback message names the type by this
    return parse


def positive(text: str) -> float:
    """A number above zero (GiB, seconds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return value


PORT = whole(1, 65535)
