#!/usr/bin/env bash
# Compile-only check of keras_cnn_ext's CUDA kernels, so the GPU code cannot rot unseen on
# machines without a GPU. Compiles every custom_ops/**/*.cu.cc with nvcc for sm_80 and sm_90
# (override with KCE_CUDA_ARCHS="80 86 90"), then syntax-checks the TensorFlow GPU wrapper
# (kce_kernels_gpu.cc, -DGOOGLE_CUDA=1) with the installed TensorFlow's headers when TensorFlow is
# importable, and links custom_ops/tests/gpu_selftest.cu.cc (device results vs the same functors on
# the host), running it when a GPU is visible. Exits 0 with a message when nvcc is not installed.
# Takes seconds per file: the .cu.cc files include no TensorFlow header.
set -euo pipefail
cd "$(dirname "$0")/.."

NVCC="${NVCC:-$(command -v nvcc || true)}"
if [[ -z "$NVCC" && -x /usr/local/cuda/bin/nvcc ]]; then NVCC=/usr/local/cuda/bin/nvcc; fi
if [[ -z "$NVCC" ]]; then
  echo "build_cuda.sh: nvcc not found; skipping the CUDA compile check."
  exit 0
fi
PYTHON="${PYTHON:-python}"
ARCHS="${KCE_CUDA_ARCHS:-80 90}"
# nvcc may be a wrapper script: find the toolkit that holds cuda_runtime.h.
CUDA_HOME="${CUDA_HOME:-}"
for cand in "$CUDA_HOME" "$(dirname "$(dirname "$(readlink -f "$NVCC")")")" /usr/local/cuda /usr/local/cuda-*; do
  if [[ -n "$cand" && -f "$cand/include/cuda_runtime.h" ]]; then CUDA_HOME="$cand"; break; fi
done
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
echo "build_cuda.sh: $("$NVCC" --version | tail -1) at $NVCC; archs: $ARCHS"

status=0
mapfile -t SOURCES < <(find custom_ops -name '*.cu.cc' | sort)
if [[ ${#SOURCES[@]} -eq 0 ]]; then echo "no .cu.cc files found"; exit 1; fi
for src in "${SOURCES[@]}"; do
  for arch in $ARCHS; do
    start=$(date +%s)
    if "$NVCC" -std=c++17 -O3 -x cu -c "$src" -o "$OUT/$(basename "$src").sm_$arch.o" \
        -Xcompiler -fPIC -I "$(dirname "$src")" -I custom_ops/cc --expt-relaxed-constexpr \
        -gencode "arch=compute_$arch,code=sm_$arch"; then
      echo "ok   $src sm_$arch ($(( $(date +%s) - start )) s)"
    else
      echo "FAIL $src sm_$arch"; status=1
    fi
  done
done

# The standalone GPU self-test (no TensorFlow): linked always, run only where a GPU is visible.
SELFTEST=custom_ops/tests/gpu_selftest.cu.cc
if [[ -f "$SELFTEST" ]]; then
  GENCODE=()
  for arch in $ARCHS; do GENCODE+=(-gencode "arch=compute_$arch,code=sm_$arch"); done
  if "$NVCC" -std=c++17 -O2 -x cu -I custom_ops/cc "$SELFTEST" custom_ops/cc/kce_kernels_gpu.cu.cc \
      "${GENCODE[@]}" -o "$OUT/gpu_selftest"; then
    echo "ok   $SELFTEST linked"
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      "$OUT/gpu_selftest" || status=1
    else
      echo "     (no GPU visible: self-test not run)"
    fi
  else
    echo "FAIL $SELFTEST"; status=1
  fi
fi

# The TensorFlow-side wrapper: needs TF headers and third_party/gpus/cuda/include (DESIGN §6).
if TF_CFLAGS="$("$PYTHON" -c 'import tensorflow as tf; print(" ".join(tf.sysconfig.get_compile_flags()))' 2>/dev/null)"; then
  mkdir -p "$OUT/inc/third_party/gpus/cuda"
  ln -s "$CUDA_HOME/include" "$OUT/inc/third_party/gpus/cuda/include"
  for wrapper in $(find custom_ops -name '*_gpu.cc' | sort); do
    # shellcheck disable=SC2086
    if g++ -std=c++17 -fsyntax-only -DGOOGLE_CUDA=1 -w \
        -I "$(dirname "$wrapper")" -I "$CUDA_HOME/include" -I "$OUT/inc" $TF_CFLAGS "$wrapper"; then
      echo "ok   $wrapper (g++ -DGOOGLE_CUDA=1, syntax only)"
    else
      echo "FAIL $wrapper"; status=1
    fi
  done
else
  echo "build_cuda.sh: TensorFlow not importable with $PYTHON; skipping the wrapper check."
fi
exit $status
