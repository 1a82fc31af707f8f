"""Hardware for a launch: GPUs and their memory as this machine reports them, or CPU processes."""

from __future__ import annotations

import os

from ..errors import UserError
from .spec import GiB, Hardware


def host_memory_gib() -> float | None:
    """This machine's physical memory in GiB (None if the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB
    except (ValueError, OSError, AttributeError):
        return None


def detect_hardware(num_processes: int, num_machines: int = 1, gpu_mem_gib: float | None = None,
                    cpu_mem_gib: float | None = None) -> Hardware:
    """The Hardware a launch of `num_processes` (over all machines) will run on.

    With GPUs here: their smallest memory (unless --gpu-mem says otherwise) and, unless given, this
    machine's RAM as the host memory per node. Without GPUs: CPU processes (fp32), each with an
    equal share of this machine's RAM as its "device" memory unless gpu_mem_gib is given.
    """
    if num_machines < 1 or num_processes < 1 or num_processes % num_machines:
        raise UserError(f"cannot plan for {num_processes} process(es) over {num_machines} machine(s): "
                        f"the processes must divide evenly over at least one machine")
    per_node = num_processes // num_machines
    host = cpu_mem_gib if cpu_mem_gib is not None else host_memory_gib()
    gpus = _gpu_memories_gib()
    if gpus:
        mem = gpu_mem_gib if gpu_mem_gib is not None else min(gpus)
        return Hardware(per_node, num_machines, mem, host, "cuda").validate()
    if gpu_mem_gib is None:
        if host is None:
            raise UserError("cannot tell this machine's memory: pass --gpu-mem (GiB per process)")
        gpu_mem_gib = host / per_node
    return Hardware(per_node, num_machines, gpu_mem_gib, None, "cpu").validate()


def _gpu_memories_gib() -> list[float]:
    try:
        import torch

        if not torch.cuda.is_available():
            return []
        return [torch.cuda.get_device_properties(i).total_memory / GiB for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - a broken CUDA setup plans like a CPU machine
        return []
