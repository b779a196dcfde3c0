// CPU kernels of KerasCnnExt>MeanPool2D and >MeanPool2DGrad. "Fast" algorithm (channels_last): a
// fused pad+pool over one output row per task with the channel axis innermost; channels_first and
// KERAS_CNN_EXT_NATIVE_CPU_ALGO=direct run the per-element functors of pool2d_functors.h.
#define EIGEN_USE_THREADS

#include <vector>

#include "kernels/pool2d_cpu.h"

namespace kce {
namespace {

using tensorflow::OpKernelContext;

struct MeanPoolForwardFast : ChannelsLastFast {  // (x) -> y
  template <typename T>
  static void Run(OpKernelContext* ctx, const PoolParams& p, const T* xp, const T*, T* yp) {
    typedef AccT<T> A;
    const i64 C = p.C;
    ParFor(ctx, p.N * p.OH, p.OW * p.KH * p.KW * C, [&](i64 b, i64 e) {
      std::vector<A> acc(C);
      ForEachWindow<A>(p, b, e, [&](i64 n, i64 oh, i64 ow, i64 r0, i64 r1, i64 c0, i64 c1, A div) {
        std::fill(acc.begin(), acc.end(), A(0));
        for (i64 h = r0; h < r1; ++h)
          for (i64 w = c0; w < c1; ++w) {
            const T* src = xp + Offset(p.xl, n, h, w, 0);
            for (i64 c = 0; c < C; ++c) acc[c] += static_cast<A>(src[c]);
          }
        T* dst = yp + Offset(p.yl, n, oh, ow, 0);
        for (i64 c = 0; c < C; ++c) dst[c] = static_cast<T>(acc[c] / div);
      });
    });
  }
};

// The two fast gradient algorithms (PoolGradFast in pool2d_cpu.h); in0 = dy.
struct MeanPoolGradImpl {
  template <typename T>
  static void WriteDisjoint(OpKernelContext* ctx, const PoolParams& p, const T* dyp, const T*,
                            T* dxp);
  template <typename T>
  static void ScatterOverlapping(OpKernelContext* ctx, const PoolParams& p, const T* dyp,
                                 const T*, T* dxp);
};

// Non-overlapping windows: each window writes dy / divisor into its own cells of dx.
template <typename T>
void MeanPoolGradImpl::WriteDisjoint(OpKernelContext* ctx, const PoolParams& p, const T* dyp,
                                     const T*, T* dxp) {
  typedef AccT<T> A;
  const i64 C = p.C;
  ParFor(ctx, p.N * p.OH, p.OW * p.KH * p.KW * C, [&](i64 b, i64 e) {
    std::vector<T> val(C);
    ForEachWindow<A>(p, b, e, [&](i64 n, i64 oh, i64 ow, i64 r0, i64 r1, i64 c0, i64 c1, A div) {
      const T* g = dyp + Offset(p.yl, n, oh, ow, 0);
      for (i64 c = 0; c < C; ++c) val[c] = static_cast<T>(static_cast<A>(g[c]) / div);
      for (i64 h = r0; h < r1; ++h)
        for (i64 w = c0; w < c1; ++w) {
          T* d = dxp + Offset(p.xl, n, h, w, 0);
          for (i64 c = 0; c < C; ++c) d[c] = val[c];
        }
    });
  });
}

// Overlapping windows: one image per task, scatter-add in the accumulation type.
template <typename T>
void MeanPoolGradImpl::ScatterOverlapping(OpKernelContext* ctx, const PoolParams& p, const T* dyp,
                                          const T*, T* dxp) {
  typedef AccT<T> A;
  const i64 C = p.C;
  ParFor(ctx, p.N, p.OH * p.OW * p.KH * p.KW * C, [&](i64 b, i64 e) {
    std::vector<A> acc(p.H * p.W * C), val(C);
    for (i64 n = b; n < e; ++n) {
      std::fill(acc.begin(), acc.end(), A(0));
      ForEachWindow<A>(p, n * p.OH, (n + 1) * p.OH,
                       [&](i64, i64 oh, i64 ow, i64 r0, i64 r1, i64 c0, i64 c1, A div) {
        const T* g = dyp + Offset(p.yl, n, oh, ow, 0);
        for (i64 c = 0; c < C; ++c) val[c] = static_cast<A>(g[c]) / div;
        for (i64 h = r0; h < r1; ++h)
          for (i64 w = c0; w < c1; ++w) {
            A* d = acc.data() + (h * p.W + w) * C;
            for (i64 c = 0; c < C; ++c) d[c] += val[c];
          }
      });
      T* out = dxp + n * p.xl.sN;
      for (i64 i = 0; i < p.H * p.W * C; ++i) out[i] = static_cast<T>(acc[i]);
    }
  });
}

typedef PoolGradFast<MeanPoolGradImpl> MeanPoolGradFast;

template <typename T>
using MeanPool2DOp = CpuOp<T, kPoolForward, MeanPoolForwardStore, MeanPoolForwardFast>;
template <typename T>
using MeanPool2DGradOp = CpuOp<T, kMeanPoolGrad, MeanPoolGradStore, MeanPoolGradFast>;

}  // namespace
}  // namespace kce

#define KCE_REGISTER_CPU(T) \
  KCE_REGISTER_MEAN_POOL2D(tensorflow::DEVICE_CPU, T, MeanPool2DOp, MeanPool2DGradOp);
KCE_CALL_TYPES(KCE_REGISTER_CPU)
#undef KCE_REGISTER_CPU
