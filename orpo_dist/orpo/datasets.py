"""A dataset handed to the trainer -> tokenized pairs (the token columns only).

Rows may be in any of TRL's preference formats (standard or conversational, explicit or implicit
prompt): they are rendered as TRL's trainers render them (data/render.py), then tokenized by the
data layer's one tokenization (data/tokenize.py). Rows that cannot train (a prompt that leaves
no room for an answer, a prompt that chosen and rejected tokenize differently) are refused with
their row numbers: the CLI's data layer has already dropped and reported such rows, so here they
mean a dataset that skipped it.
"""

from __future__ import annotations

from ..data.render import render_example
from ..data.errors import BadRowError
from ..data.tokenize import TOKEN_COLUMNS, refuse_rows, tokenize_pairs
from ..errors import UserError

REFUSED = "_orpo_refused"  # per row: why it cannot train, "" when it can


def tokenize_dataset(dataset, tokenizer, args, name: str):
    """`dataset` (a datasets.Dataset, or a dict of them for several eval sets) tokenized for ORPO."""
    if isinstance(dataset, dict):
        return type(dataset)({key: tokenize_dataset(part, tokenizer, args, f"{name} {key!r}")
                              for key, part in dataset.items()})
    max_length = args.max_length if args.max_length is not None else 512

    def tokenize_batch(batch):
        rows = [render_example({k: batch[k][i] for k in batch}, tokenizer) for i in range(len(next(iter(batch.values()))))]
        triples = [(r["prompt"], r["chosen"], r["rejected"]) for r in rows]
        out = {key: [] for key in (*TOKEN_COLUMNS, REFUSED)}
        for result in tokenize_pairs(tokenizer, triples, max_length, args.max_prompt_length,
                                     args.max_completion_length):
            refused = isinstance(result, BadRowError)
            for key in TOKEN_COLUMNS:
                out[key].append([] if refused else result.row[key])
            out[REFUSED].append(str(result) if refused else "")
        return out

    if set(TOKEN_COLUMNS) <= set(dataset.column_names):
        return dataset  # tokenized already (data/cache.py: prepared once per node)
    _check_columns(dataset, name)
    tokenized = dataset.map(tokenize_batch, batched=True, remove_columns=dataset.column_names,
                            num_proc=args.dataset_num_proc, desc=f"Tokenizing the {name} pairs")
    refuse_rows([(i, reason) for i, reason in enumerate(tokenized[REFUSED]) if reason], len(tokenized), name)
    return tokenized.remove_columns(REFUSED)


def _check_columns(dataset, name: str) -> None:
    columns = set(dataset.column_names)
    if {"chosen", "rejected"} <= columns:
        return
    raise UserError(f"the {name} dataset needs chosen and rejected columns (and a prompt, unless the answers "
                    f"are conversations that share it); it has {', '.join(sorted(columns)) or 'none'}")
