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

template <typename T> struct AccOf { typedef float type; };
template <> struct AccOf<double> { typedef double type; };

constexpr int kThreads = 256;

inline int Blocks(i64 total) {
  i64 b = (total + kThreads - 1) / kThreads;
  return static_cast<int>(b > 65535 * 8 ? 65535 * 8 : (b < 1 ? 1 : b));
}

#define KCE_GRID_LOOP(i, total) \
  for (i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; i < (total); \
       i += static_cast<i64>(blockDim.x) * gridDim.x)

template <typename T>
__global__ void CorrForwardKernel(CorrParams p, const T* x, const T* w, T* y, i64 total) {
  typedef typename AccOf<T>::type A;
  KCE_GRID_LOOP(i, total) {
    i64 r = i;
    const i64 f = r % p.F; r /= p.F;
    const i64 ow = r % p.OW; r /= p.OW;
    const i64 oh = r % p.OH, n = r / p.OH;
    y[Offset(p.yl, n, oh, ow, f)] = static_cast<T>(CorrForwardElem<T, A>(p, x, w, i));
  }
}

template <typename T>
__global__ void CorrBackpropInputKernel(CorrParams p, const T* w, const T* dy, T* dx, i64 total) {
  typedef typename AccOf<T>::type A;
  KCE_GRID_LOOP(i, total) {
    i64 r = i;
    const i64 c = r % p.C; r /= p.C;
    const i64 xw = r % p.W; r /= p.W;
    const i64 xh = r % p.H, n = r / p.H;
    dx[Offset(p.xl, n, xh, xw, c)] = static_cast<T>(CorrBackpropInputElem<T, A>(p, w, dy, i));
  }
}

template <typename T>
__global__ void CorrBackpropFilterKernel(CorrParams p, const T* x, const T* dy, T* dw, i64 total) {
  typedef typename AccOf<T>::type A;
  KCE_GRID_LOOP(i, total) { dw[i] = static_cast<T>(CorrBackpropFilterElem<T, A>(p, x, dy, i)); }
}

template <typename T>
__global__ void MaxPoolForwardKernel(PoolParams p, const T* x, T* y, i64 total) {
  typedef typename AccOf<T>::type A;
  KCE_GRID_LOOP(i, total) {
    i64 r = i;
    const i64 c = r % p.C; r /= p.C;
    const i64 ow = r % p.OW; r /= p.OW;
    const i64 oh = r % p.OH, n = r / p.OH;
    A best;
    MaxPoolArgmax<T, A>(p, x, n, oh, ow, c, &best);
    y[Offset(p.yl, n, oh, ow, c)] = static_cast<T>(best);
  }
}

template <typename T>
__global__ void MaxPoolGradKernel(PoolParams p, const T* x, const T* dy, T* dx, i64 total) {
  typedef typename AccOf<T>::type A;
  KCE_GRID_LOOP(i, total) {
    i64 r = i;
    const i64 c = r % p.C; r /= p.C;
    const i64 xw = r % p.W; r /= p.W;
    const i64 xh = r % p.H, n = r / p.H;
    dx[Offset(p.xl, n, xh, xw, c)] = static_cast<T>(MaxPoolGradElem<T, A>(p, x, dy, i));
  }
}

template <typename T>
__global__ void MeanPoolForwardKernel(PoolParams p, const T* x, T* y, i64 total) {
  typedef typename AccOf<T>::type A;
  KCE_GRID_LOOP(i, total) {
    i64 r = i;
    const i64 c = r % p.C; r /= p.C;
    const i64 ow = r % p.OW; r /= p.OW;
    const i64 oh = r % p.OH, n = r / p.OH;
    y[Offset(p.yl, n, oh, ow, c)] = static_cast<T>(MeanPoolSum<T, A>(p, x, n, oh, ow, c) /
                                                   static_cast<A>(PoolDivisor(p, oh, ow)));
  }
}

template <typename T>
__global__ void MeanPoolGradKernel(PoolParams p, const T* dy, T* dx, i64 total) {
  typedef typename AccOf<T>::type A;
  KCE_GRID_LOOP(i, total) {
    i64 r = i;
    const i64 c = r % p.C; r /= p.C;
    const i64 xw = r % p.W; r /= p.W;
    const i64 xh = r % p.H, n = r / p.H;
    dx[Offset(p.xl, n, xh, xw, c)] = static_cast<T>(MeanPoolGradElem<T, A>(p, dy, i));
  }
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

template <typename T>
const T* In(const void* p) { return static_cast<const T*>(p); }
template <typename T>
T* Out(void* p) { return static_cast<T*>(p); }

}  // namespace

#define KCE_LAUNCH(KERNEL, total, stream, ...)                                          \
  do {                                                                                  \
    if ((total) > 0)                                                                    \
      KERNEL<<<Blocks(total), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(__VA_ARGS__, total); \
    return static_cast<int>(cudaGetLastError());                                        \
  } while (0)

int CorrForward(void* stream, DType t, const CorrParams& p, const void* x, const void* w, void* y) {
  const i64 total = p.N * p.OH * p.OW * p.F;
  return Dispatch(t, [&](auto* tag) -> int {
    typedef typename std::remove_pointer<decltype(tag)>::type T;
    KCE_LAUNCH(CorrForwardKernel<T>, total, stream, p, In<T>(x), In<T>(w), Out<T>(y));
  });
}

int CorrBackpropInput(void* stream, DType t, const CorrParams& p, const void* w, const void* dy,
                      void* dx) {
  const i64 total = p.N * p.H * p.W * p.C;
  return Dispatch(t, [&](auto* tag) -> int {
    typedef typename std::remove_pointer<decltype(tag)>::type T;
    KCE_LAUNCH(CorrBackpropInputKernel<T>, total, stream, p, In<T>(w), In<T>(dy), Out<T>(dx));
  });
}

int CorrBackpropFilter(void* stream, DType t, const CorrParams& p, const void* x, const void* dy,
                       void* dw) {
  const i64 total = p.KH * p.KW * p.C * p.F;
  return Dispatch(t, [&](auto* tag) -> int {
    typedef typename std::remove_pointer<decltype(tag)>::type T;
    KCE_LAUNCH(CorrBackpropFilterKernel<T>, total, stream, p, In<T>(x), In<T>(dy), Out<T>(dw));
  });
}

int MaxPoolForward(void* stream, DType t, const PoolParams& p, const void* x, void* y) {
  const i64 total = p.N * p.OH * p.OW * p.C;
  return Dispatch(t, [&](auto* tag) -> int {
    typedef typename std::remove_pointer<decltype(tag)>::type T;
    KCE_LAUNCH(MaxPoolForwardKernel<T>, total, stream, p, In<T>(x), Out<T>(y));
  });
}

int MaxPoolGrad(void* stream, DType t, const PoolParams& p, const void* x, const void* dy,
                void* dx) {
  const i64 total = p.N * p.H * p.W * p.C;
  return Dispatch(t, [&](auto* tag) -> int {
    typedef typename std::remove_pointer<decltype(tag)>::type T;
    KCE_LAUNCH(MaxPoolGradKernel<T>, total, stream, p, In<T>(x), In<T>(dy), Out<T>(dx));
  });
}

int MeanPoolForward(void* stream, DType t, const PoolParams& p, const void* x, void* y) {
  const i64 total = p.N * p.OH * p.OW * p.C;
  return Dispatch(t, [&](auto* tag) -> int {
    typedef typename std::remove_pointer<decltype(tag)>::type T;
    KCE_LAUNCH(MeanPoolForwardKernel<T>, total, stream, p, In<T>(x), Out<T>(y));
  });
}

int MeanPoolGrad(void* stream, DType t, const PoolParams& p, const void* dy, void* dx) {
  const i64 total = p.N * p.H * p.W * p.C;
  return Dispatch(t, [&](auto* tag) -> int {
    typedef typename std::remove_pointer<decltype(tag)>::type T;
    KCE_LAUNCH(MeanPoolGradKernel<T>, total, stream, p, In<T>(dy), Out<T>(dx));
  });
}

const char* ErrorString(int err) { return cudaGetErrorString(static_cast<cudaError_t>(err)); }

}  // namespace gpu
}  // namespace kce
