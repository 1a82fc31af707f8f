"""Issue 20's regression guard: a short version of `orpo-dist demo --data hh` (the bundled recipe
hh-rlhf-smollm2 on real human preferences, SmolLM2-135M-Instruct, the fast step) must still move
held-out preferences on a fixed slice of rows it never trained on. Not the goal (README's "Real
human preferences" has the full run and its learning curve): a guard that the path trains."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orpo_dist.run_folder import EVAL_FILE

REPO = Path(__file__).resolve().parents[1]
HH_FILE = REPO / ".." / "shared" / "data" / "hh-rlhf-harmless-base" / "test.jsonl.gz"
STEPS = 24  # 192 training pairs (file rows 0-191 of the training range, in the recipe's order)
SLICE = "train[1535:1727]"  # the first 192 file rows of the held-out range


@pytest.mark.slow
@pytest.mark.skipif(not HH_FILE.exists(), reason="../shared/data/hh-rlhf-harmless-base/test.jsonl.gz not present")
def test_short_hh_run_moves_held_out_preferences(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "orpo_dist", "demo", "--data", "hh", "--output_dir", str(out),
                           "--no-generate", "--max_steps", str(STEPS), "--dataset_test_split", SLICE,
                           "--save_strategy", "no", "--report_to", "none"],
                          cwd=REPO, capture_output=True, text=True, timeout=1200, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    scores = json.loads((out / EVAL_FILE).read_text())
    base, trained = scores["base"], scores["trained"]
    assert base["pairs"] == trained["pairs"] >= 190  # the slice's good pairs, scored by both
    print(f"hh guard: accuracy {base['accuracy']:.1%} -> {trained['accuracy']:.1%}, "
          f"gap {base['gap']:+.3f} -> {trained['gap']:+.3f}")
    assert trained["gap"] > base["gap"] + 0.02
    assert trained["accuracy"] > base["accuracy"]
