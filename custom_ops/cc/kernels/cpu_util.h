// CPU-side helpers of the kernels: the thread pool, the choice between the two CPU algorithms, and
// Eigen matrix aliases. Files that include it define EIGEN_USE_THREADS first (before any Eigen
// header), as TensorFlow's own CPU kernels do.
//
// Two algorithms per op, both multi-threaded with TensorFlow's intra-op thread pool:
//   * "fast" (default): correlation = blocked im2col + Eigen GEMM (corr2d_op.cc); channels_last
//     pooling = fused pad+pool with the channel axis innermost (max_pool2d_op.cc, mean_pool2d_op.cc);
//   * "direct": one output element at a time through the per-element functors
//     (corr2d_functors.h, pool2d_functors.h) — exactly the code the CUDA kernels run. Selected with
//     the environment variable KERAS_CNN_EXT_NATIVE_CPU_ALGO=direct (the tests use it to check the
//     GPU arithmetic on CPU); channels_first pooling always uses it.
#ifndef KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_CPU_UTIL_H_
#define KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_CPU_UTIL_H_

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "Eigen/Core"
#include "tensorflow/core/framework/op_kernel.h"
#include "kernels/window_kernel.h"

namespace kce {

inline bool UseDirect() {
  const char* v = std::getenv("KERAS_CNN_EXT_NATIVE_CPU_ALGO");
  return v != nullptr && std::strcmp(v, "direct") == 0;
}

template <typename Fn>
void ParFor(tensorflow::OpKernelContext* ctx, i64 total, i64 cost, Fn&& fn) {
  if (total <= 0) return;
  auto* workers = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  workers->ParallelFor(total, std::max<i64>(cost, 1), [&fn](int64_t b, int64_t e) { fn(b, e); });
}

inline int NumThreads(tensorflow::OpKernelContext* ctx) {
  return std::max(1, ctx->device()->tensorflow_cpu_worker_threads()->num_threads);
}

// The "direct" algorithm: Op::Run (the CUDA kernels' body) per output element.
template <typename Op, typename T, typename P>
void DirectLoop(tensorflow::OpKernelContext* ctx, const P& p, i64 cost, const T* in0, const T* in1,
                T* out) {
  ParFor(ctx, Op::Total(p), cost, [&](i64 b, i64 e) {
    for (i64 i = b; i < e; ++i) Op::template Run<T>(p, in0, in1, out, i);
  });
}

template <typename T>
void SetZero(tensorflow::OpKernelContext* ctx, T* p, i64 n) {
  ParFor(ctx, n, 1, [&](i64 b, i64 e) { std::fill(p + b, p + e, T(0)); });
}

// The CPU kernel of op Kind: validation and allocation (WindowKernel), then zeros for an empty sum,
// the per-element functor Store (the "direct" algorithm, also taken where Fast does not support the
// layout), or Fast::Run, the op's fast algorithm.
template <typename T, OpKind Kind, typename Store, typename Fast>
class CpuOp : public WindowKernel<Kind, true> {
 public:
  using WindowKernel<Kind, true>::WindowKernel;
  void Compute(tensorflow::OpKernelContext* ctx) override {
    typename WindowKernel<Kind, true>::Params p;
    tensorflow::TensorShape ys;
    tensorflow::Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, this->Prepare(ctx, &p, &ys, &out));
    const i64 total = out->NumElements();
    if (total == 0) return;
    const T* in[2];
    this->template TensorInputs<T>(ctx, in);
    T* o = out->flat<T>().data();
    // Nothing to sum over: no windows (a gradient of an empty output) or no input channels.
    if (ys.num_elements() == 0 || p.C == 0) return SetZero(ctx, o, total);
    if (UseDirect() || !Fast::Supports(p))
      return DirectLoop<Store>(ctx, p, Store::Cost(p), in[0], in[1], o);
    Fast::Run(ctx, p, in[0], in[1], o);
  }
};

template <typename A>
using RowMat = Eigen::Matrix<A, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename A>
using ColMat = Eigen::Matrix<A, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;

}  // namespace kce

#endif  // KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_CPU_UTIL_H_
