// Device side of the CUDA launchers (included by the *_gpu.cu.cc files only): one thread per output
// element (grid-stride loop) running the per-element functor Op::Run that the CPU "direct" path runs
// too. Deterministic: the input gradients are gathers, not atomics. Plain CUDA: no TensorFlow
// header, so each .cu.cc compiles in seconds.
#ifndef KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_GPU_LAUNCH_CU_H_
#define KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_GPU_LAUNCH_CU_H_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "kernels/gpu_launch.h"

namespace kce {
namespace gpu {

constexpr int kThreads = 256;

inline int Blocks(i64 total) {
  i64 b = (total + kThreads - 1) / kThreads;
  return static_cast<int>(b > 65535 * 8 ? 65535 * 8 : (b < 1 ? 1 : b));
}

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

// Launches ElemKernel<Op> with the CUDA element type of `t` on `stream`; returns the cudaError_t.
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

}  // namespace gpu
}  // namespace kce

#endif  // KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_GPU_LAUNCH_CU_H_
