"""`orpo-dist launch` builds what accelerate expects (checked with accelerate's own parsers)."""

from __future__ import annotations

import json
import shlex

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import launch_command_parser

from orpo_dist.errors import UserError
from orpo_dist.launcher.command import Layout, build, layout_from_env
from orpo_dist.launcher.network import GLOO_INTERFACE_VARIABLE
from orpo_dist.strategies import (
    DEEPSPEED, FSDP2, FULL_OFFLOAD, NO_OFFLOAD, PLAIN, REGISTRY, STRATEGIES, configs_dir, with_engine,
)

from .helpers import REPO, TINY_RECIPE, run_case


def accelerate_args(command):
    argv = command.argv
    assert argv[1:3] == ["-m", "accelerate.commands.launch"]
    return launch_command_parser().parse_args(argv[3:])


@pytest.mark.parametrize("record", [s for s in REGISTRY if s.processes != "one"], ids=lambda s: s.name)
def test_each_strategy_builds_a_valid_accelerate_command(record):
    """Each registry entry's config files say what the entry says it does (checked with accelerate's
    and DeepSpeed's own readers): the test a new strategy gets for free."""
    command = build(record.name, Layout(4), "r.yaml", ["--learning_rate", "5e-6"], on_gpu=True)
    args = accelerate_args(command)
    assert args.num_processes == 4 and args.num_machines == 1
    assert args.module and args.training_script == "orpo_dist.train"
    assert args.training_script_args == ["--config", "r.yaml", "--learning_rate", "5e-6"]
    config = load_config_from_file(args.config_file)
    assert config.distributed_type == {DEEPSPEED: "DEEPSPEED", FSDP2: "FSDP", PLAIN: "MULTI_GPU"}[record.engine]
    assert (args.deepspeed_config_file is not None) == (record.engine == DEEPSPEED)
    if record.engine == DEEPSPEED:
        ds = json.loads(open(args.deepspeed_config_file).read())
        stage = ds["zero_optimization"]["stage"]
        assert stage == (3 if record.shards_parameters else 2)
        # TrainingArguments stay the one source of batch size, lr and precision.
        for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size"):
            assert ds[key] == "auto"
        assert ds["bf16"]["enabled"] == "auto"
        if stage == 3:
            assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
        assert ("offload_optimizer" in ds["zero_optimization"]) == (record.offload != NO_OFFLOAD)
        assert ("offload_param" in ds["zero_optimization"]) == (record.offload == FULL_OFFLOAD)
    if record.engine == FSDP2:
        fsdp = config.fsdp_config
        assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
        assert fsdp["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"  # DCP checkpoints: they reshard on resume
        assert fsdp["fsdp_offload_params"] == (record.offload == FULL_OFFLOAD)  # torch offloads states + step
        assert record.offload in (NO_OFFLOAD, FULL_OFFLOAD)
    assert "DS_ACCELERATOR" not in command.env  # on GPUs nothing CPU-specific is added


def test_names_and_labels_are_unique_and_every_config_file_belongs_to_an_entry():
    assert len(set(STRATEGIES)) == len(STRATEGIES) and len({s.label for s in REGISTRY}) == len(REGISTRY)
    shipped = {p.stem for p in (configs_dir() / "accelerate").glob("*.yaml")}
    assert shipped == set(STRATEGIES)
    assert {p.stem for p in (configs_dir() / "deepspeed").glob("*.json")} == set(with_engine(DEEPSPEED))


def test_cpu_runs_get_gloo_friendly_settings():
    command = build("zero3", Layout(2), "r.yaml", [], on_gpu=False)
    assert command.env["DS_ACCELERATOR"] == "cpu" and int(command.env["OMP_NUM_THREADS"]) >= 1


def test_single_is_one_process():
    args = accelerate_args(build("single", Layout(1), "r.yaml", [], on_gpu=True))
    assert load_config_from_file(args.config_file).distributed_type == "NO"
    with pytest.raises(UserError, match="one process"):
        build("single", Layout(2), "r.yaml", [], on_gpu=True)


def test_two_machine_launch_takes_rank_and_address_from_each_node():
    node1 = {"NODE_RANK": "1", "MASTER_ADDR": "10.1.2.3", "MASTER_PORT": "29511"}
    layout = layout_from_env(16, 2, None, None, None, environ=node1)
    args = accelerate_args(build("zero3", layout, "r.yaml", [], on_gpu=True))
    assert (args.num_processes, args.num_machines, args.machine_rank) == (16, 2, 1)
    assert (args.main_process_ip, args.main_process_port) == ("10.1.2.3", 29511)
    node0 = layout_from_env(16, 2, None, None, None, environ={**node1, "NODE_RANK": "0"})
    assert node0.machine_rank == 0
    # Flags win over the environment.
    assert layout_from_env(16, 2, 1, "h", 1, environ={"NODE_RANK": "0"}).machine_rank == 1


def test_multi_machine_launch_names_the_interface_gloo_binds_to(monkeypatch):
    """gloo binds to what the hostname resolves to (often loopback); several machines get the
    interface that routes to the main address instead, unless the user named one."""
    monkeypatch.delenv(GLOO_INTERFACE_VARIABLE, raising=False)
    two = Layout(2, num_machines=2, machine_rank=1, main_process_ip="127.0.0.1", main_process_port=29511)
    assert build("ddp", two, "r.yaml", [], on_gpu=False).env[GLOO_INTERFACE_VARIABLE] == "lo"
    assert GLOO_INTERFACE_VARIABLE not in build("ddp", Layout(2), "r.yaml", [], on_gpu=False).env
    monkeypatch.setenv(GLOO_INTERFACE_VARIABLE, "ib0")
    assert GLOO_INTERFACE_VARIABLE not in build("ddp", two, "r.yaml", [], on_gpu=False).env  # theirs is kept


def test_multi_machine_without_rank_or_address_is_refused():
    with pytest.raises(UserError, match="rank"):
        layout_from_env(16, 2, None, "10.0.0.1", None, environ={})
    with pytest.raises(UserError, match="main-process-ip"):
        layout_from_env(16, 2, 0, None, None, environ={})
    with pytest.raises(UserError, match="divide"):
        layout_from_env(3, 2, 0, "h", None, environ={})
    with pytest.raises(UserError, match="outside"):
        layout_from_env(4, 2, 2, "h", None, environ={})


# The CLI's own entry point in this process (the launching layer imports no training code: a
# subprocess each would mostly import; tests/test_layout.py runs one in a fresh process).
def test_dry_run_prints_the_exact_command(capsys):
    status, out, err = run_case(["launch", "--dry-run", "--strategy", "zero2", "--num-processes", "2", TINY_RECIPE,
                                 "--max_steps", "3"], capsys)
    assert status == 0, err
    line = next(l for l in out.splitlines() if "accelerate.commands.launch" in l)
    argv = [a for a in shlex.split(line) if "=" not in a or a.startswith("--")]
    args = launch_command_parser().parse_args(argv[argv.index("accelerate.commands.launch") + 1:])
    assert args.num_processes == 2 and args.training_script_args[-2:] == ["--max_steps", "3"]
    assert str(REPO / "orpo_dist" / "configs" / "deepspeed" / "zero2.json") == args.deepspeed_config_file


def test_launch_refuses_a_bad_recipe_before_starting(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name_or_path: x\nlearnin_rate: 1\n")
    status, _, err = run_case(["launch", "--dry-run", "--strategy", "ddp", "--num-processes", "2", bad], capsys)
    assert status == 2 and "learnin_rate" in err and "Traceback" not in err


def test_auto_strategy_comes_from_the_planner(capsys):
    status, out, err = run_case(["launch", "--dry-run", "--strategy", "auto", "--num-processes", "2", TINY_RECIPE],
                                capsys)
    assert status == 0, err
    assert "recommended: ddp" in out  # the tiny model fits everywhere: the fastest, DDP
    assert "--config_file" in out and "ddp.yaml" in out


def test_a_strategy_that_cannot_fit_is_refused_unless_forced(capsys):
    args = ["launch", "--dry-run", "--strategy", "ddp", "--num-processes", "2", "--gpu-mem", "0.5", TINY_RECIPE]
    status, _, err = run_case(args, capsys)
    assert status == 2 and "will not fit" in err and "Traceback" not in err
    status, out, _ = run_case([*args[:-1], "--force", TINY_RECIPE], capsys)
    assert status == 0 and "ddp.yaml" in out
