"""The strategy registry's reading of a launched process (strategies.running_engine) and the rules
that follow from the engine: refusals before any weight loads or any shard is read."""

from __future__ import annotations

import pytest

from orpo_dist.errors import UserError
from orpo_dist.strategies import DEEPSPEED, FSDP2, PLAIN, REGISTRY, running_engine, strategy

# What `accelerate launch` puts in each process's environment for each kind of config file.
LAUNCH_ENV = {
    PLAIN: {},
    DEEPSPEED: {"ACCELERATE_USE_DEEPSPEED": "true"},
    FSDP2: {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"},
}


@pytest.mark.parametrize("record", REGISTRY, ids=lambda s: s.name)
def test_each_strategys_config_file_makes_its_processes_see_its_engine(record):
    import yaml

    config = yaml.safe_load(record.accelerate_config.read_text())
    kind = config["distributed_type"]
    env = {"DEEPSPEED": LAUNCH_ENV[DEEPSPEED], "FSDP": LAUNCH_ENV[FSDP2]}.get(kind, {})
    assert running_engine(environ=env) == record.engine


def test_fsdp_version_1_and_unknown_names_are_refused_in_one_line():
    with pytest.raises(UserError, match="FSDP version 1; orpo-dist runs FSDP2"):
        running_engine(environ={"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"})
    with pytest.raises(UserError, match="unknown strategy 'zero4'; choose one of single, ddp, .* or auto"):
        strategy("zero4")


def test_qlora_under_fsdp2_refuses_integer_4bit_storage(monkeypatch):
    """accelerate#3983: uint8 storage under FSDP trained to loss 0 / grad_norm nan silently."""
    import torch

    from orpo_dist.model import quantization_config
    from orpo_dist.recipe import ModelArguments

    margs = ModelArguments(model_name_or_path="m", load_in_4bit=True, use_peft=True, bnb_4bit_quant_storage="uint8")
    assert quantization_config(margs, torch.float32).bnb_4bit_quant_storage == torch.uint8  # fine elsewhere
    for name, value in LAUNCH_ENV[FSDP2].items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UserError, match="bnb_4bit_quant_storage uint8 cannot be sharded by FSDP2: remove the field"):
        quantization_config(margs, torch.float32)
    margs.bnb_4bit_quant_storage = None
    assert quantization_config(margs, torch.float32).bnb_4bit_quant_storage == torch.float32  # follows compute


def test_defaults_name_registered_strategies():
    from orpo_dist.strategies import ONE_PROCESS, STRATEGIES, SUBMIT_DEFAULT

    assert strategy(ONE_PROCESS).processes == "one" and SUBMIT_DEFAULT in STRATEGIES
