"""Checks made against the live Slurm cluster before anything is submitted."""

from __future__ import annotations

import re
import shutil
import subprocess

from ...errors import UserError


# The Slurm commands a submission uses, and what for (submitit calls squeue, sacct and scancel).
NEEDED_COMMANDS = {"sinfo": "asks for the partitions", "sbatch": "submits the job",
                   "srun": "starts the task on each node (the job script calls it)",
                   "squeue": "follows the job", "sacct": "reads how the job ended", "scancel": "cancels it",
                   "scontrol": "finds the nodes' addresses and requeues a job at its time limit"}


def _sinfo(*args: str) -> str:
    if shutil.which("sinfo") is None:
        raise UserError(
            "no Slurm reachable: `sinfo` is not on PATH. Run this on a login node, start a local cluster "
            "(bash scripts/local-cluster.sh start), or use --cluster local to run the job here."
        )
    missing = [name for name in NEEDED_COMMANDS if shutil.which(name) is None]
    if missing:
        uses = "; ".join(f"{name} {NEEDED_COMMANDS[name]}" for name in missing)
        raise UserError(f"Slurm is only partly on PATH here: {', '.join(f'`{m}`' for m in missing)} missing ({uses}). "
                        "Load the module or PATH that provides all of Slurm's commands (e.g. `module load slurm`), "
                        "or use --cluster local to run the job here")
    missing = _missing_config()
    if missing:
        raise UserError(f"no Slurm reachable: {missing}. Set SLURM_CONF to the cluster's slurm.conf (local "
                        "cluster: eval \"$(bash scripts/local-cluster.sh env)\"), or use --cluster local")
    try:
        out = subprocess.run(["sinfo", *args], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise UserError("no Slurm reachable: `sinfo` did not answer within 60 s") from None
    if out.returncode != 0:
        raise UserError(
            f"no Slurm reachable: `sinfo` failed: {out.stderr.strip() or out.stdout.strip()}\n"
            "  Is slurmctld up and SLURM_CONF set? (local cluster: eval \"$(bash scripts/local-cluster.sh env)\")"
        )
    return out.stdout


def _missing_config() -> str | None:
    """SLURM_CONF naming a file that is not there (Slurm's clients retry it for 60 s). When it is
    unset, the clients' compiled-in default (often not /etc/slurm) is theirs to find."""
    import os

    conf = os.environ.get("SLURM_CONF")
    if conf and not os.path.isfile(conf):
        return f"SLURM_CONF names {conf}, which does not exist"
    return None


def partitions() -> dict[str, dict]:
    """{partition: {"nodes": int, "gpus_per_node": int, "default": bool}} as sinfo reports them."""
    found: dict[str, dict] = {}
    for line in _sinfo("-h", "-o", "%P|%D|%G").splitlines():
        if not line.strip():
            continue
        name, nodes, gres = line.split("|")
        default = name.endswith("*")
        name = name.rstrip("*")
        entry = found.setdefault(name, {"nodes": 0, "gpus_per_node": 0, "default": default})
        entry["nodes"] += int(nodes)
        entry["gpus_per_node"] = max(entry["gpus_per_node"], gpus_in_gres(gres))
    return found


def gpus_in_gres(gres: str) -> int:
    """'gpu:8', 'gpu:a100:4(S:0-1)', 'gpu:2,shard:4' -> GPUs per node; '(null)' -> 0."""
    total = 0
    for item in gres.split(","):
        match = re.match(r"gpu(?::[^:(]+)?:(\d+)", item.strip())
        if match:
            total += int(match.group(1))
    return total


def check(partition: str | None, nodes: int, gpus_per_node: int | None) -> tuple[str, int]:
    """Validate the request; returns the partition that will be used and the GPUs per node: the
    request's, or (None) what the partition's nodes report in sinfo's GRES."""
    if nodes < 1:
        raise UserError(f"--nodes must be at least 1, got {nodes}")
    if gpus_per_node is not None and gpus_per_node < 0:
        raise UserError(f"--gpus-per-node cannot be negative, got {gpus_per_node}")
    parts = partitions()
    if not parts:
        raise UserError("Slurm reports no partitions")
    if partition is None:
        defaults = [name for name, p in parts.items() if p["default"]]
        if not defaults:
            raise UserError(f"the cluster has no default partition: pass --partition ({', '.join(parts)})")
        partition = defaults[0]
    if partition not in parts:
        raise UserError(f"unknown partition {partition!r}; this cluster has: {', '.join(sorted(parts))}")
    info = parts[partition]
    if nodes > info["nodes"]:
        raise UserError(f"--nodes {nodes} but partition {partition!r} has {info['nodes']} node(s)")
    if gpus_per_node is None:
        return partition, info["gpus_per_node"]
    if gpus_per_node > info["gpus_per_node"]:
        raise UserError(
            f"--gpus-per-node {gpus_per_node} but the nodes of partition {partition!r} have "
            f"{info['gpus_per_node']} GPU(s) each (sinfo's GRES); use --gpus-per-node 0 for CPU nodes"
        )
    return partition, gpus_per_node
