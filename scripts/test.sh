#!/usr/bin/env bash
# Run every test as CI does: fast tests, slow (real model, multi-process) tests and the real-Slurm
# tests. The local Slurm cluster is started first and always stopped at the end, even on failure.
# Fast subset only: .venv/bin/python -m pytest -m "not slow and not slurm"
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export ORPO_SLURM_DIR=${ORPO_SLURM_DIR:-/tmp/orpo-slurm-test-$$}

cleanup() { bash scripts/local-cluster.sh stop || true; rm -rf "$ORPO_SLURM_DIR"; }
if [ -x scripts/local-cluster.sh ] || [ -f scripts/local-cluster.sh ]; then
  trap cleanup EXIT
  bash scripts/local-cluster.sh start
  eval "$(bash scripts/local-cluster.sh env)"
fi
python -m pytest -ra "$@"
