// CPU-side helpers shared by the fast pooling kernels (max_pool2d_op.cc, mean_pool2d_op.cc).
#ifndef KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_POOL2D_CPU_H_
#define KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_POOL2D_CPU_H_

#include "kernels/cpu_util.h"
#include "kernels/pool2d_functors.h"

namespace kce {

// The fast pooling algorithms run the channel axis innermost: channels_last only (channels_first
// takes the per-element functors, see CpuOp).
struct ChannelsLastFast {
  static bool Supports(const PoolParams& p) { return p.xl.sC == 1; }
};

// Calls fn(n, oh, ow, r0, r1, c0, c1, divisor) for every window of output rows [b, e) of the
// flattened (n, oh) range: the cells [r0, r1) x [c0, c1) of the window that lie in the input, and
// the mean's divisor.
template <typename A, typename Fn>
void ForEachWindow(const PoolParams& p, i64 b, i64 e, Fn&& fn) {
  for (i64 u = b; u < e; ++u) {
    const i64 n = u / p.OH, oh = u % p.OH;
    i64 r0, r1;
    WindowRange(oh, p.sh, p.pt, p.KH, p.H, &r0, &r1);
    for (i64 ow = 0; ow < p.OW; ++ow) {
      i64 c0, c1;
      WindowRange(ow, p.sw, p.pl, p.KW, p.W, &c0, &c1);
      fn(n, oh, ow, r0, r1, c0, c1, static_cast<A>(PoolDivisor(p, oh, ow)));
    }
  }
}

// The fast gradient of a pooling op, given Impl::WriteDisjoint (non-overlapping windows: each
// writes its own cells of dx) and Impl::ScatterOverlapping (one image per task, scatter-add).
template <typename Impl>
struct PoolGradFast : ChannelsLastFast {
  template <typename T>
  static void Run(tensorflow::OpKernelContext* ctx, const PoolParams& p, const T* in0,
                  const T* in1, T* dxp) {
    if (!Disjoint(p)) return Impl::ScatterOverlapping(ctx, p, in0, in1, dxp);
    if (!Covers(p)) SetZero(ctx, dxp, p.N * p.H * p.W * p.C);  // cells outside every window
    Impl::WriteDisjoint(ctx, p, in0, in1, dxp);
  }
};

}  // namespace kce

#endif  // KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_POOL2D_CPU_H_
