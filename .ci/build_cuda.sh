#!/usr/bin/env bash
# Compile-only check of keras_cnn_ext's CUDA kernels, so the GPU code cannot rot unseen on
# machines without a GPU. The file lists, nvcc discovery, CUDA toolkit and architectures come from
# keras_cnn_ext/ops/native_config.py (the same definitions build_native.py uses): every CUDA
# source is compiled with nvcc for each architecture (default sm_80 and sm_90; KCE_CUDA_ARCHS="80 86
# 90" overrides), the TensorFlow GPU wrapper is syntax-checked with -DGOOGLE_CUDA=1 against the
# installed TensorFlow's headers when TensorFlow is importable, and the standalone self-test
# (custom_ops/tests/gpu_selftest.cu.cc: device results vs the same functors on the host) is
# linked, and run when a GPU is visible. Exits 0 with a message when nvcc is not installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
# NVCC, CUDA_HOME, CUDA_ARCHS, SOURCE_ROOT, CUDA_SOURCES, GPU_WRAPPER_SOURCES, CUDA_SELFTEST
eval "$("$PYTHON" keras_cnn_ext/ops/native_config.py --shell)"
if [[ -z "$NVCC" ]]; then
  echo "build_cuda.sh: nvcc not found; skipping the CUDA compile check."
  exit 0
fi
if [[ -z "$CUDA_HOME" ]]; then
  echo "build_cuda.sh: no CUDA toolkit with include/cuda_runtime.h for $NVCC"; exit 1
fi
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
echo "build_cuda.sh: $("$NVCC" --version | tail -1) at $NVCC; archs: $CUDA_ARCHS"
read -r -a SOURCES <<< "$CUDA_SOURCES"
GENCODE=()
for arch in $CUDA_ARCHS; do GENCODE+=(-gencode "arch=compute_$arch,code=sm_$arch"); done

status=0
for src in "${SOURCES[@]}"; do
  for arch in $CUDA_ARCHS; do
    start=$(date +%s)
    if "$NVCC" -std=c++17 -O3 -x cu -c "$src" -o "$OUT/$(basename "$src").sm_$arch.o" \
        -Xcompiler -fPIC -I "$SOURCE_ROOT" --expt-relaxed-constexpr \
        -gencode "arch=compute_$arch,code=sm_$arch"; then
      echo "ok   $src sm_$arch ($(( $(date +%s) - start )) s)"
    else
      echo "FAIL $src sm_$arch"; status=1
    fi
  done
done

# The standalone GPU self-test (no TensorFlow): linked always, run only where a GPU is visible.
if "$NVCC" -std=c++17 -O2 -x cu -I "$SOURCE_ROOT" "$CUDA_SELFTEST" "${SOURCES[@]}" \
    "${GENCODE[@]}" -o "$OUT/gpu_selftest"; then
  echo "ok   $CUDA_SELFTEST linked"
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "$OUT/gpu_selftest" || status=1
  else
    echo "     (no GPU visible: self-test not run)"
  fi
else
  echo "FAIL $CUDA_SELFTEST"; status=1
fi

# The TensorFlow-side wrapper: needs TF headers and third_party/gpus/cuda/include, which the
# TensorFlow wheel does not ship (build_native.py makes the same link).
if TF_CFLAGS="$("$PYTHON" -c 'import tensorflow as tf; print(" ".join(tf.sysconfig.get_compile_flags()))' 2>/dev/null)"; then
  mkdir -p "$OUT/inc/third_party/gpus/cuda"
  ln -s "$CUDA_HOME/include" "$OUT/inc/third_party/gpus/cuda/include"
  for wrapper in $GPU_WRAPPER_SOURCES; do
    # shellcheck disable=SC2086
    if g++ -std=c++17 -fsyntax-only -DGOOGLE_CUDA=1 -w \
        -I "$SOURCE_ROOT" -I "$CUDA_HOME/include" -I "$OUT/inc" $TF_CFLAGS "$wrapper"; then
      echo "ok   $wrapper (g++ -DGOOGLE_CUDA=1, syntax only)"
    else
      echo "FAIL $wrapper"; status=1
    fi
  done
else
  echo "build_cuda.sh: TensorFlow not importable with $PYTHON; skipping the wrapper check."
fi
exit $status
