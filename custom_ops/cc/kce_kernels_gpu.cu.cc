// CUDA kernels of keras_cnn_ext's custom ops: one thread per output element (grid-stride loops),
// each running the per-element functor of kce_functors.h that the CPU "direct" path runs too
// (tests/test_native.py checks that path against the NumPy reference). Deterministic: the input
// gradients are gathers, not atomics. Plain CUDA: no TensorFlow header.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "kce_functors.h"
#include "kce_gpu_launch.h"

namespace kce {
namespace gpu {
namespace {

constexpr int kThreads = 256;

inline int Blocks(i64 total) {
  i64 b = (total + kThreads - 1) / kThreads;
  return static_cast<int>(b > 65535 * 8 ? 65535 * 8 : (b < 1 ? 1 : b));
}

// One thread per output element (grid-stride loop) running Op::Run (kce_functors.h).
template <typename Op, typename T, typename P>
__global__ void ElemKernel(P p, const T* in0, const T* in1, T* out, i64 total) {
  for (i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<i64>(blockDim.x) * gridDim.x)
    Op::template Run<T>(p, in0, in1, out, i);
}

// Calls fn(T*) with the CUDA element type of `t`.
template <typename Fn>
int Dispatch(DType t, Fn&& fn) {
  switch (t) {
    case kF16: return fn(static_cast<__half*>(nullptr));
    case kBF16: return fn(static_cast<__nv_bfloat16*>(nullptr));
    case kF32: return fn(static_cast<float*>(nullptr));
    case kF64: return fn(static_cast<double*>(nullptr));
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

// Launches ElemKernel<Op> with the CUDA element type of `t` on `stream`.
template <typename Op, typename P>
int Launch(void* stream, DType t, const P& p, const void* in0, const void* in1, void* out) {
  const i64 total = Op::Total(p);
  return Dispatch(t, [&](auto* tag) -> int {
    typedef typename std::remove_pointer<decltype(tag)>::type T;
    if (total > 0)
      ElemKernel<Op, T, P><<<Blocks(total), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
          p, static_cast<const T*>(in0), static_cast<const T*>(in1), static_cast<T*>(out), total);
    return static_cast<int>(cudaGetLastError());
  });
}

}  // namespace

int CorrForward(void* stream, DType t, const CorrParams& p, const void* x, const void* w, void* y) {
  return Launch<CorrForwardStore>(stream, t, p, x, w, y);
}

int CorrBackpropInput(void* stream, DType t, const CorrParams& p, const void* w, const void* dy,
                      void* dx) {
  return Launch<CorrBackpropInputStore>(stream, t, p, w, dy, dx);
}

int CorrBackpropFilter(void* stream, DType t, const CorrParams& p, const void* x, const void* dy,
                       void* dw) {
  return Launch<CorrBackpropFilterStore>(stream, t, p, x, dy, dw);
}

int MaxPoolForward(void* stream, DType t, const PoolParams& p, const void* x, void* y) {
  return Launch<MaxPoolForwardStore>(stream, t, p, x, nullptr, y);
}

int MaxPoolGrad(void* stream, DType t, const PoolParams& p, const void* x, const void* dy,
                void* dx) {
  return Launch<MaxPoolGradStore>(stream, t, p, x, dy, dx);
}

int MeanPoolForward(void* stream, DType t, const PoolParams& p, const void* x, void* y) {
  return Launch<MeanPoolForwardStore>(stream, t, p, x, nullptr, y);
}

int MeanPoolGrad(void* stream, DType t, const PoolParams& p, const void* dy, void* dx) {
  return Launch<MeanPoolGradStore>(stream, t, p, dy, nullptr, dx);
}

const char* ErrorString(int err) { return cudaGetErrorString(static_cast<cudaError_t>(err)); }

}  // namespace gpu
}  // namespace kce
