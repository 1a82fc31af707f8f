"""A batch of preference pairs as shared-prefix rows: every unique token through the model once.

TRL's stock step pads chosen and rejected to one length and runs the prompt twice. Here each pair
becomes one block `S + C + R` of a row: S is the longest common prefix of the chosen and the
rejected sequence (the prompt, and any opening the two answers share), C and R the rest of each.
R's tokens see S but not C (a 4D attention mask), and their positions continue from the end of S,
so every hidden state is the one the stock step computes for that token.

Blocks are packed first-fit into rows of one width, padding filling what is left of a row. The
width is the cheapest for the batch (row_width): every position costs its projections and MLP,
padding included, and dense attention costs each row the square of its width. Rows as wide as
the longest block waste what first-fit leaves over (23% of positions on HH-RLHF at batch 8);
a little wider often packs the same blocks into the same rows with almost no padding. Under
FlexAttention, which skips the mask's empty blocks, attention costs next to nothing per row
width, and the widest row (everything in one) is the cheapest.

The loss needs a log-prob only where a term uses it: the *targets*. A target is a (hidden
position, next token) pair with flags saying which terms it feeds; a target the two sequences
share (inside S) is computed once and counted for both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...data.tokenize import common_prefix as _common_prefix, pair_tokens

SEG_PAD, SEG_SHARED, SEG_CHOSEN, SEG_REJECTED = -1, 0, 1, 2


@dataclass
class PackedBatch:
    input_ids: torch.LongTensor  # (rows, length)
    position_ids: torch.LongTensor  # (rows, length)
    pair_ids: torch.LongTensor  # (rows, length): pair of each token, -1 for padding
    segments: torch.LongTensor  # (rows, length): SEG_*
    # Targets, flattened over the rows: hidden position (into rows*length) and the token it predicts.
    target_positions: torch.LongTensor
    target_tokens: torch.LongTensor
    target_pairs: torch.LongTensor
    in_chosen_seq: torch.BoolTensor  # any chosen sequence position (the logits/chosen metric)
    in_nll: torch.BoolTensor  # chosen sequence token the NLL term sees
    in_chosen: torch.BoolTensor  # chosen answer token (labels != -100): the chosen log-prob
    in_rejected: torch.BoolTensor  # rejected answer token: the rejected log-prob
    in_rejected_seq: torch.BoolTensor  # any rejected sequence position (the logits/rejected metric)
    num_pairs: int

    @property
    def unique_tokens(self) -> int:
        return int((self.pair_ids >= 0).sum())

    def attention_mask(self, dtype: torch.dtype | None = None, window: int | None = None) -> torch.Tensor:
        """(rows, 1, length, length): True (or 0.0) where a query may look at a key.

        Causal within a pair's block, nothing across pairs, and R never sees C. Padding queries see
        themselves only, so no softmax row is empty. A float `dtype` gives an additive mask (eager
        attention); None a boolean one (SDPA). `window`: a sliding-window layer's, counted in
        positions (R's continue from S), so a query sees the keys transformers' own mask lets it
        see in the padded sequence: those less than `window` positions back."""
        n = self.input_ids.shape[1]
        idx = torch.arange(n, device=self.input_ids.device)
        causal = idx[None, :, None] >= idx[None, None, :]
        q_pair, k_pair = self.pair_ids[:, :, None], self.pair_ids[:, None, :]
        q_seg, k_seg = self.segments[:, :, None], self.segments[:, None, :]
        allowed = causal & (q_pair == k_pair) & (q_pair >= 0)
        allowed &= ~((q_seg == SEG_REJECTED) & (k_seg == SEG_CHOSEN))
        if window:
            allowed &= (self.position_ids[:, :, None] - self.position_ids[:, None, :]) < window
        allowed |= torch.eye(n, dtype=torch.bool, device=idx.device)[None]
        allowed = allowed[:, None]
        if dtype is None:
            return allowed
        return torch.zeros(allowed.shape, dtype=dtype, device=idx.device).masked_fill(~allowed, torch.finfo(dtype).min)


    def block_mask(self, window: int | None = None):
        """The same mask as a FlexAttention BlockMask (GPUs: blocks with nothing to attend to
        are skipped, so packing many pairs per row costs no dense L x L attention)."""
        from torch.nn.attention.flex_attention import create_block_mask

        pair_ids, segments, positions = self.pair_ids, self.segments, self.position_ids

        def mask_mod(b, h, q, k):
            same = (pair_ids[b, q] == pair_ids[b, k]) & (pair_ids[b, q] >= 0) & (q >= k)
            blind = (segments[b, q] == SEG_REJECTED) & (segments[b, k] == SEG_CHOSEN)
            if window:
                same = same & (positions[b, q] - positions[b, k] < window)
            return (same & ~blind) | (q == k)

        rows, n = pair_ids.shape
        return create_block_mask(mask_mod, rows, None, n, n, device=pair_ids.device)


def _sequences(batch: dict, side: str) -> list[tuple[list[int], list[bool]]]:
    """(token ids, is-answer flags) of each row of TRL's padded `chosen_*` or `rejected_*` tensors."""
    ids, mask, labels = batch[f"{side}_input_ids"], batch[f"{side}_attention_mask"], batch[f"{side}_labels"]
    out = []
    for row_ids, row_mask, row_labels in zip(ids.tolist(), mask.tolist(), labels.tolist()):
        keep = [j for j, m in enumerate(row_mask) if m]
        out.append(([row_ids[j] for j in keep], [row_labels[j] != -100 for j in keep]))
    return out


def _first_fit(lengths: list[int], capacity: int) -> list[list[int]]:
    """Pair indices per row: longest first, each into the first row with room."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    return rows


def attention_cost(config) -> float:
    """Dense attention's work per (query, key) position pair over the work per position of the
    projections and the MLP, for a decoder config (FLOPs: QK^T and PV against the linear layers)."""
    hidden, heads = config.hidden_size, config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    q, kv = heads * head_dim, (getattr(config, "num_key_value_heads", None) or heads) * head_dim
    per_position = 2 * (2 * hidden * q + 2 * hidden * kv + 3 * hidden * config.intermediate_size)
    return 4 * q / per_position


def row_width(lengths: list[int], cost_per_pair: float | None, multiple: int = 1) -> int:
    """The row width at which first-fit packing of these blocks costs least, as rows x width x
    (1 + cost_per_pair x width) (attention_cost): from the longest block up to all of them in one
    row, in steps of `multiple` (at least 1/64 of the longest block). None: the longest block."""
    longest = -(-max(lengths) // multiple) * multiple
    if cost_per_pair is None:
        return longest
    step = max(multiple, -(-longest // 64 // multiple) * multiple)
    best, best_cost = longest, float("inf")
    for width in range(longest, sum(lengths) + step, step):
        cost = len(_first_fit(lengths, width)) * width * (1 + cost_per_pair * width)
        if cost < best_cost:
            best, best_cost = width, cost
    return best


def pack_pairs(batch: dict, pad_token_id: int, share_prefix: bool = True, pack_rows: bool = True,
               completion_only_nll: bool = False, pad_to_multiple_of: int = 1,
               cost_per_pair: float | None = None) -> PackedBatch:
    """Pack a TRL-collated ORPO batch (chosen_/rejected_ input_ids, attention_mask, labels).

    share_prefix=False puts chosen and rejected in blocks of their own (no shared prompt);
    pack_rows=False gives every block a row of its own. Both exist to measure each technique
    alone; the results are the same either way. cost_per_pair (attention_cost; 0 under
    FlexAttention) picks the row width (row_width); None keeps rows as wide as the longest block."""
    chosen, rejected = _sequences(batch, "chosen"), _sequences(batch, "rejected")
    blocks = []  # per pair: (tokens, positions, segments, targets)
    for pair, ((c, c_ans), (r, r_ans)) in enumerate(zip(chosen, rejected)):
        k = _common_prefix(c, r) if share_prefix else 0
        tokens = c[:k] + c[k:] + r[k:]
        positions = list(range(len(c))) + list(range(k, len(r)))
        segments = [SEG_SHARED] * k + [SEG_CHOSEN] * (len(c) - k) + [SEG_REJECTED] * (len(r) - k)
        # targets: (block-local hidden index, token, chosen_seq, nll, chosen, rejected, rejected_seq)
        targets = []
        for t in range(1, len(c)):
            shared = t < k  # the rejected sequence has the same hidden state and the same next token
            targets.append([t - 1, c[t], True, not completion_only_nll or c_ans[t], c_ans[t],
                            shared and r_ans[t], shared])
        offset = len(c) - k  # where R starts, relative to its own sequence index
        for t in range(max(k, 1), len(r)):
            hidden = t - 1 if t - 1 < k else t - 1 + offset
            targets.append([hidden, r[t], False, False, False, r_ans[t], True])
        blocks.append((tokens, positions, segments, targets))

    lengths = [len(b[0]) for b in blocks]
    if pack_rows:
        width = row_width(lengths, cost_per_pair, pad_to_multiple_of)
        rows = _first_fit(lengths, width)
    else:
        width = -(-max(lengths) // pad_to_multiple_of) * pad_to_multiple_of
        rows = [[i] for i in range(len(blocks))]
    n_rows = len(rows)
    input_ids = torch.full((n_rows, width), pad_token_id, dtype=torch.long)
    position_ids = torch.zeros((n_rows, width), dtype=torch.long)
    pair_ids = torch.full((n_rows, width), -1, dtype=torch.long)
    segments = torch.full((n_rows, width), SEG_PAD, dtype=torch.long)
    flat_targets: list[list[int]] = []
    # The largest position a real token has: the stock step's too (its padded width less one).
    last_position = max(max(block[1], default=0) for block in blocks)
    for r, members in enumerate(rows):
        start = 0
        for pair in members:
            tokens, positions, segs, targets = blocks[pair]
            end = start + len(tokens)
            input_ids[r, start:end] = torch.tensor(tokens)
            position_ids[r, start:end] = torch.tensor(positions)
            pair_ids[r, start:end] = pair
            segments[r, start:end] = torch.tensor(segs)
            base = r * width + start
            flat_targets.extend([base + t[0], t[1], pair, *t[2:]] for t in targets)
            start = end
        if start < width:
            # Padding sees only itself, so its positions change nothing but what some rotary
            # embeddings read from the batch: dynamic and longrope scaling pick their frequencies
            # by the largest position id (Phi-3's long factors past its original context).
            # Increasing, and never past the real tokens' largest.
            position_ids[r, start:] = torch.arange(width - start).clamp(max=last_position)
    t = torch.tensor(flat_targets, dtype=torch.long).reshape(-1, 8)
    device = batch["chosen_input_ids"].device
    return PackedBatch(
        input_ids=input_ids.to(device), position_ids=position_ids.to(device),
        pair_ids=pair_ids.to(device), segments=segments.to(device),
        target_positions=t[:, 0].to(device), target_tokens=t[:, 1].to(device), target_pairs=t[:, 2].to(device),
        in_chosen_seq=t[:, 3].bool().to(device), in_nll=t[:, 4].bool().to(device),
        in_chosen=t[:, 5].bool().to(device), in_rejected=t[:, 6].bool().to(device),
        in_rejected_seq=t[:, 7].bool().to(device),
        num_pairs=len(blocks),
    )


def unique_token_count(batch: dict) -> int:
    """Unique tokens of a collated batch: the same count for either step, so tokens per second
    compare like for like."""
    return sum(pair_tokens(c, r) for (c, _), (r, _) in zip(_sequences(batch, "chosen"), _sequences(batch, "rejected")))
