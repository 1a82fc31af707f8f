"""Reach accelerate's own FSDP2 code from CPU processes (gloo): the code GPUs run.

accelerate decides FSDP only for GPU-like process types: on CPU processes, `accelerate launch`
with an FSDP config silently gives unsynchronised single processes (field notes). Once the CPU
process group is up, this marks the shared state as FSDP with the plugin accelerate builds from
the launch environment (the FSDP_* variables of the config file), which is what AcceleratorState
does on GPUs. The Trainer's Accelerator then finds the state configured and prepares, saves and
loads the model through accelerate's FSDP2 functions, as on GPUs. The one place this happens.
"""

from __future__ import annotations


def reach_fsdp_on_cpu() -> None:
    """Call after PartialState(cpu=True, ...) on a machine without GPUs, before TrainingArguments
    set up their devices (with accelerator_config's use_configured_state, so they keep it)."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin, TorchDynamoPlugin
    from torch.distributed.fsdp import CPUOffloadPolicy

    plugin = FullyShardedDataParallelPlugin()
    if isinstance(plugin.cpu_offload, CPUOffloadPolicy):
        # Offload pins host memory for fast copies to a GPU; without one, torch cannot pin. The
        # shards, their gradients and the optimizer step still take the offload path.
        plugin.cpu_offload = CPUOffloadPolicy(pin_memory=False)
    AcceleratorState(cpu=True, fsdp_plugin=plugin, dynamo_plugin=TorchDynamoPlugin(), _from_accelerator=True)
    # AcceleratorState copies PartialState's fields on every construction: both must say FSDP.
    for shared in (PartialState._shared_state, AcceleratorState._shared_state):
        shared["distributed_type"] = DistributedType.FSDP
    AcceleratorState._shared_state["fsdp_plugin"] = plugin
