"""`orpo-dist submit`: Slurm through submitit (cli), the per-node job (job) and the checks made
against the live cluster before anything is submitted (preflight)."""
