#!/usr/bin/env bash
# Install llama.cpp's Python binding (llama-cpp-python) into .venv: the real GGUF client the tests
# use as the judge of `orpo-dist export --gguf` (orpo_dist/export/llama_cpp.py).
#
# PyPI has no wheel of it, only a source archive that compiles all of llama.cpp (about 4.5 minutes
# on 2 cores as pip builds it). We build only what the binding loads: the CPU backend and libllama,
# without the multimodal library (LLAVA_BUILD=OFF) and without llama.cpp's `common` library, which
# the binding never loads but its CMakeLists forces on (about 1.7 minutes). The wheel is cached
# outside the repo, per machine type and CPU feature set, so later runs install it in seconds.
# Safe to run again.
#
# On x86-64 it is built for AVX2 rather than for this very CPU (GGML_NATIVE): on a VM whose CPU
# flags list AMX (seen: AMD EPYC with avx512 + amx_int8), a native build takes ggml's AMX path for
# q8_0 and dies of SIGSEGV in its first matrix product. The GGUF is what is being judged here,
# not llama.cpp's speed.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.3.36
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1

if python - "$VERSION" <<'PY' 2>/dev/null; then
import importlib.metadata as m, sys
sys.exit(0 if m.version("llama_cpp_python") == sys.argv[1] else 1)
PY
  echo "llama-cpp: llama-cpp-python $VERSION is installed"
  exit 0
fi

if [ "$(uname -m)" = x86_64 ]; then
  ISA="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
else
  ISA="-DGGML_NATIVE=ON"
fi
cpu=$( (uname -m; echo "$ISA"; grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null) | sha256sum | cut -c1-12)
CACHE=${ORPO_DIST_CACHE:-$HOME/.cache/orpo-dist}/wheels/llama-cpp-$cpu
wheel=$(ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "llama-cpp: building llama-cpp-python $VERSION from its PyPI source (once, about 2 minutes)"
  start=$(date +%s)
  pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$work"
  tar -xzf "$work"/llama_cpp_python-"$VERSION".tar.gz -C "$work"
  src="$work/llama_cpp_python-$VERSION"
  # The binding loads libllama and ggml only; `common` is llama.cpp's tools' library.
  sed -i 's/set(LLAMA_BUILD_COMMON ON CACHE BOOL "Build llama.cpp common library" FORCE)/set(LLAMA_BUILD_COMMON OFF CACHE BOOL "Build llama.cpp common library" FORCE)/' \
    "$src/CMakeLists.txt"
  grep -q 'LLAMA_BUILD_COMMON OFF CACHE BOOL "Build llama.cpp common library" FORCE)' "$src/CMakeLists.txt" \
    || echo "llama-cpp: note: the source no longer forces LLAMA_BUILD_COMMON; building it as shipped"
  mkdir -p "$CACHE"
  CMAKE_ARGS="-DLLAVA_BUILD=OFF $ISA -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) pip wheel -q --no-deps -w "$work/wheel" "$src" >"$work/build.log" 2>&1 \
    || { tail -n 30 "$work/build.log"; echo "llama-cpp: the build failed (log above)"; exit 1; }
  mv "$work"/wheel/llama_cpp_python-"$VERSION"-*.whl "$CACHE"/
  wheel=$(ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl | head -n 1)
  echo "llama-cpp: built in $(( $(date +%s) - start )) s, cached as $wheel"
fi
pip install -q "$wheel"
python -c "import llama_cpp; print('llama-cpp: llama-cpp-python', llama_cpp.__version__, 'ready')"
