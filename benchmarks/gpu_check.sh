#!/usr/bin/env bash
# The GPU check: what only a CUDA GPU can confirm about orpo-dist, in one table, in ~10 minutes.
#
#   bash benchmarks/gpu_check.sh [--wheelhouse DIR] [--model DIR] [--dataset FILE] [--out DIR]
#   bash benchmarks/gpu_check.sh build-wheelhouse DIR [--for DIST...] [--have image-packages.txt]
#   bash benchmarks/gpu_check.sh --cpu-rehearsal      # the same commands on a CPU (tests the plumbing)
#
# Runs with the image's Python (PYTHON=..., default python3) and its own torch; orpo-dist runs
# from this checkout. What the image lacks comes from a wheelhouse built where a registry is
# reachable (build-wheelhouse), or the check refuses and lists it. Details: benchmarks/gpu_check.py.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ "${1:-}" = "build-wheelhouse" ]; then
    # Built here, from the versions orpo-dist's own venv runs (its torch says what torch needs).
    shift
    venv_python="$here/../.venv/bin/python"
    [ -x "$venv_python" ] || venv_python=python3
    exec "${PYTHON:-$venv_python}" "$here/wheelhouse.py" "$@"
fi
PYTHON="${PYTHON:-python3}"
export PYTHON
exec "$PYTHON" "$here/gpu_check.py" "$@"
