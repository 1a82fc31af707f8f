"""`orpo-dist plan`: predict memory per GPU for each strategy and recommend one, before a GPU-hour
is spent.

Works offline for the built-in models (Llama-3/3.1 8B and 70B, Mistral-7B, Mixtral-8x7B, Qwen2.5
0.5B-72B, SmolLM2) and for any local model folder or config.json; other hub names are looked up
online unless HF_HUB_OFFLINE is set. Parameters are counted on the meta device. Method and
assumptions: docs/planner.md.
"""

from __future__ import annotations

import argparse

from ..arg_types import positive, whole
from ..errors import UserError
from ..recipe_checks import config_overrides_value
from ..model_rules import DEFAULT_MAX_LENGTH

EPILOG = """examples:
  orpo-dist plan --model meta-llama/Meta-Llama-3-70B --method lora --gpus-per-node 8 --gpu-mem 80
  orpo-dist plan --model meta-llama/Meta-Llama-3-8B-Instruct --method qlora --gpu-mem 24 \\
      --lora-targets q_proj k_proj v_proj o_proj --optim paged_adamw_8bit
  orpo-dist plan --recipe llama3-8b-qlora --gpu-mem 16
  orpo-dist plan --model ./my-model --nodes 2 --gpus-per-node 8 --gpu-mem 40 --cpu-mem 512 --json
  orpo-dist plan --recipe tiny --device cpu --gpus-per-node 2 --gpu-mem 8
"""


def _on_off(text: str) -> bool:
    value = text.strip().lower()
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orpo-dist plan", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="hub name, built-in name, local model folder or config.json")
    p.add_argument("--recipe", help="take the model and workload from a recipe: a YAML file or a bundled "
                                    "recipe's name (flags override it)")
    p.add_argument("--method", choices=["full", "lora", "qlora"], help="default: the recipe's, else full")
    hw = p.add_argument_group("hardware")
    hw.add_argument("--gpus-per-node", type=whole(1), default=1, help="default 1")
    hw.add_argument("--nodes", type=whole(1), default=1, help="default 1")
    hw.add_argument("--gpu-mem", type=positive, default=80.0, help="GiB per GPU (default 80)")
    hw.add_argument("--cpu-mem", type=positive, help="GiB of host memory per node (checked for offload)")
    hw.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                    help="cpu: fp32 CPU processes standing in for GPUs (--gpu-mem = RAM per process)")
    wl = p.add_argument_group("workload (defaults: the recipe's, else TRL's)")
    wl.add_argument("--max-length", type=int, help=f"tokens per sequence (default {DEFAULT_MAX_LENGTH})")
    wl.add_argument("--batch", type=int, help="per-device micro-batch in preference pairs (default 1 without a recipe)")
    wl.add_argument("--grad-accum", type=int, help="gradient accumulation steps (default 1)")
    wl.add_argument("--global-batch", type=int,
                    help="pairs per optimizer step to keep (default: batch x grad-accum x GPUs)")
    wl.add_argument("--gradient-checkpointing", type=_on_off, metavar="on|off", help="default on")
    wl.add_argument("--lora-r", type=int, help="LoRA rank (default 16)")
    wl.add_argument("--lora-targets", nargs="+", metavar="NAME",
                    help="modules to adapt: names (q_proj k_proj ...), all-linear (default: attention projections)")
    wl.add_argument("--lora-dropout", type=float, help="default 0.05")
    wl.add_argument("--optim", help="optimizer, e.g. adamw_torch_fused (default), paged_adamw_8bit")
    wl.add_argument("--double-quant", type=_on_off, metavar="on|off", help="QLoRA double quantisation (default on)")
    wl.add_argument("--dtype", choices=["bfloat16", "float16", "float32"],
                    help="weights dtype (default bfloat16 on GPUs, float32 with --device cpu)")
    wl.add_argument("--orpo-step", choices=["auto", "fast", "stock"],
                    help="ORPO step to plan for (default: the recipe's, else auto: the fast step, no full logits, "
                    "for llama/mistral/qwen2/qwen3)")
    wl.add_argument("--model-config-overrides", metavar="JSON",
                    help='change config fields before counting, e.g. \'{"num_hidden_layers": 2}\'')
    p.add_argument("--margin", type=float, default=0.10, help="share of GPU memory kept free (default 0.10)")
    p.add_argument("--json", action="store_true", help="print the plan and recommendation as JSON")
    return p


def _recipe_values(name_or_path: str) -> dict:
    from ..recipe_compat import upgrade
    from ..recipe_files import load_yaml, resolve

    return upgrade(load_yaml(name_or_path), str(resolve(name_or_path)))


def recipe_from_args(args) -> dict:
    """Recipe fields from --recipe (if any) with the flags laid over them."""
    values = _recipe_values(args.recipe) if args.recipe else {"per_device_train_batch_size": 1,
                                                                 "use_bnb_nested_quant": True}
    if args.model:
        values["model_name_or_path"] = args.model
    if not values.get("model_name_or_path"):
        raise UserError("which model? pass --model NAME_OR_PATH (a hub name, a built-in name such as "
                        "meta-llama/Meta-Llama-3-8B, a local folder or config.json) or --recipe RECIPE")
    if args.method:
        values["use_peft"] = args.method != "full"
        values["load_in_4bit"] = args.method == "qlora"
        values.pop("load_in_8bit", None)
    flags = {
        "max_length": args.max_length, "per_device_train_batch_size": args.batch,
        "gradient_accumulation_steps": args.grad_accum, "gradient_checkpointing": args.gradient_checkpointing,
        "lora_r": args.lora_r, "lora_dropout": args.lora_dropout, "optim": args.optim,
        "use_bnb_nested_quant": args.double_quant, "dtype": args.dtype, "orpo_step": args.orpo_step,
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    if args.lora_targets:
        names = [t.strip() for item in args.lora_targets for t in item.split(",") if t.strip()]
        values["lora_target_modules"] = "all-linear" if names == ["all-linear"] else names
        values.pop("lora_all_linear", None)
    if args.model_config_overrides:
        values["model_config_overrides"] = config_overrides_value(args.model_config_overrides,
                                                                  "--model-config-overrides")
    return values


def main(argv: list[str]) -> int:
    args = make_parser().parse_args(argv)
    from .memory import estimate
    from .spec import Assumptions, Hardware
    from .inputs import inputs_from_recipe
    from .recommend import recommend
    from .printout import format_plan, plan_json

    hardware = Hardware(args.gpus_per_node, args.nodes, args.gpu_mem, args.cpu_mem, args.device).validate()
    if not 0 <= args.margin < 0.9:
        raise UserError(f"--margin must be in [0, 0.9), got {args.margin}")
    if args.global_batch is not None and args.global_batch < 1:
        raise UserError(f"--global-batch must be at least 1, got {args.global_batch}")
    values = recipe_from_args(args)
    shape, method, workload = inputs_from_recipe(values)
    if args.global_batch:
        workload = workload.replace(global_batch=args.global_batch)
    plan = estimate(shape, method, hardware, workload, Assumptions(margin=args.margin))
    rec = recommend(plan)
    print(plan_json(plan, rec) if args.json else format_plan(plan, rec))
    return 0
