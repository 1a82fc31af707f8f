"""orpo-dist's fast ORPO forward (forward.py) and its parts: packing, hidden states, chunked head,
activation checkpointing. Proven equal to the padded forward and to TRL's step (tests/test_orpo_step.py)."""
