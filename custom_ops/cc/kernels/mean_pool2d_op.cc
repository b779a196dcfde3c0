// CPU kernels of KerasCnnExt>MeanPool2D and >MeanPool2DGrad. "Fast" algorithm (channels_last): a
// fused pad+pool over whole output rows per task with the channel axis innermost, in vector pieces
// (WithPieceWidth in pool2d_cpu.h); channels_first and KERAS_CNN_EXT_NATIVE_CPU_ALGO=direct
// run the per-element functors of pool2d_functors.h. Every path sums a window's cells in
// row-major order.
#define EIGEN_USE_THREADS

#include "kernels/pool2d_cpu.h"

namespace kce {
namespace {

using tensorflow::OpKernelContext;

// Output rows [b, e) of the flattened (n, oh) range, in groups of pieces of K channels (see
// WithPieceWidth, ForPieceGroups); each window's cells summed in row-major order.
template <int K, typename T>
void MeanForwardRows(const PoolParams& p, const T* xp, T* yp, i64 b, i64 e) {
  typedef Piece<K, T> Q;
  ForEachWindow<typename Q::A>(p, b, e, [&](i64 n, i64 oh, i64 ow, i64 r0, i64 r1, i64 c0,
                                            i64 c1, typename Q::A div) {
    ForPieceGroups<K, 4>(p.C, [&](int m, const i64* first, const i64*) {
      typename Q::V acc[4] = {};
      for (i64 h = r0; h < r1; ++h)
        for (i64 w = c0; w < c1; ++w)
          for (int q = 0; q < m; ++q) acc[q] += Q::Load(xp + Offset(p.xl, n, h, w, first[q]));
      for (int q = 0; q < m; ++q) Q::Store(acc[q] / div, yp + Offset(p.yl, n, oh, ow, first[q]));
    });
  });
}

struct MeanPoolForwardFast : ChannelsLastFast {  // (x) -> y
  template <typename T>
  static void Run(OpKernelContext* ctx, const PoolParams& p, const T* xp, const T*, T* yp) {
    ParFor(ctx, p.N * p.OH, p.OW * p.KH * p.KW * p.C, [&](i64 b, i64 e) {
      WithPieceWidth<AccT<T>>(p.C, [&](auto k) {
        MeanForwardRows<decltype(k)::value>(p, xp, yp, b, e);
      });
    });
  }
};

template <typename T>
using MeanPool2DOp = CpuOp<T, kPoolForward, MeanPoolForwardStore, MeanPoolForwardFast>;

// The gradient of output rows [b, e) of the flattened (n, oh) range, in pieces of K channels: each
// window's dy / divisor goes to each of its cells of dx(n), image n's dx (element type D): stored
// where windows are disjoint, added (kAdd) where they overlap; the channels a piece repeats add 0.
template <int K, bool kAdd, typename T, typename DxFn>
void MeanGradRows(const PoolParams& p, const T* dyp, i64 b, i64 e, DxFn dx) {
  typedef Piece<K, T> Q;
  typename Q::M lane;
  for (int c = 0; c < Q::P; ++c) lane[c] = c;
  ForEachWindow<typename Q::A>(p, b, e, [&](i64 n, i64 oh, i64 ow, i64 r0, i64 r1, i64 q0,
                                            i64 q1, typename Q::A div) {
    auto* dn = dx(n);
    ForPieces<K>(p.C, [&](i64 c0, i64 s) {
      typename Q::V v = Q::Load(dyp + Offset(p.yl, n, oh, ow, c0)) / div;
      if (kAdd && s > c0) v = lane < static_cast<typename Q::I>(s - c0) ? typename Q::V{} : v;
      for (i64 h = r0; h < r1; ++h)
        for (i64 w = q0; w < q1; ++w) {
          auto* d = dn + (h * p.W + w) * p.C + c0;
          Q::Store(kAdd ? Q::Load(d) + v : v, d);
        }
    });
  });
}

// The two fast gradient algorithms (PoolGradFast in pool2d_cpu.h); in0 = dy.
struct MeanPoolGradImpl {
  // Non-overlapping windows: each window writes its own cells of dx.
  template <typename T>
  static void WriteDisjoint(OpKernelContext* ctx, const PoolParams& p, const T* dyp, const T*,
                            T* dxp) {
    ParFor(ctx, p.N * p.OH, p.OW * p.KH * p.KW * p.C, [&](i64 b, i64 e) {
      WithPieceWidth<AccT<T>>(p.C, [&](auto k) {
        MeanGradRows<decltype(k)::value, false>(p, dyp, b, e,
                                                [&](i64 n) { return dxp + n * p.xl.sN; });
      });
    });
  }

  // Overlapping windows: the windows' dy / divisor summed per image (ScatterImages).
  template <typename T>
  static void ScatterOverlapping(OpKernelContext* ctx, const PoolParams& p, const T* dyp,
                                 const T*, T* dxp) {
    ScatterImages(ctx, p, p.OH * p.OW * p.KH * p.KW * p.C, dxp, [&](i64 n, AccT<T>* acc) {
      WithPieceWidth<AccT<T>>(p.C, [&](auto k) {
        MeanGradRows<decltype(k)::value, true>(p, dyp, n * p.OH, (n + 1) * p.OH,
                                               [&](i64) { return acc; });
      });
    });
  }
};

template <typename T>
using MeanPool2DGradOp =
    CpuOp<T, kMeanPoolGrad, MeanPoolGradStore, PoolGradFast<MeanPoolGradImpl>>;

}  // namespace
}  // namespace kce

#define KCE_REGISTER_CPU(T) \
  KCE_REGISTER_MEAN_POOL2D(tensorflow::DEVICE_CPU, T, MeanPool2DOp, MeanPool2DGradOp);
KCE_CALL_TYPES(KCE_REGISTER_CPU)
#undef KCE_REGISTER_CPU
