// CPU kernels of KerasCnnExt>MaxPool2D and >MaxPool2DGrad. "Fast" algorithm (channels_last): a
// fused pad+pool over one output row per task with the channel axis innermost, never materializing
// the padded input; channels_first and KERAS_CNN_EXT_NATIVE_CPU_ALGO=direct run the per-element
// functors of pool2d_functors.h (the CUDA kernels' code). Every path ranks cells with MaxBeats
// (NaN above every number, the first of equal cells wins).
#define EIGEN_USE_THREADS

#include <vector>

#include "kernels/pool2d_cpu.h"

namespace kce {
namespace {

using tensorflow::OpKernelContext;

template <typename A> struct SameWidthInt { typedef int32_t type; };
template <> struct SameWidthInt<double> { typedef int64_t type; };

// Branch-free per-channel steps over one window cell (the __restrict pointers let the compiler use
// compares and blends instead of unpredictable branches). kPadded: the cell is a padded zero
// ("zeros" mode) and `src` is unused.
template <bool kPadded, typename T, typename A>
void MaxStep(const T* __restrict src, A* __restrict best, i64 C) {
  for (i64 c = 0; c < C; ++c) {
    const A v = kPadded ? A(0) : static_cast<A>(src[c]);
    const A b = best[c];
    best[c] = MaxBeats(v, b) ? v : b;
  }
}

// Like MaxStep, also recording the winning cell's window index k in `arg`; kFirst: the window's
// first cell, which wins unconditionally.
template <bool kPadded, bool kFirst, typename T, typename A, typename I>
void ArgmaxStep(const T* __restrict src, A* __restrict best, I* __restrict arg, I k, i64 C) {
  for (i64 c = 0; c < C; ++c) {
    const A v = kPadded ? A(0) : static_cast<A>(src[c]);
    const A b = best[c];
    const I a = arg[c];
    const bool win = kFirst || MaxBeats(v, b);
    best[c] = win ? v : b;
    arg[c] = win ? k : a;
  }
}

// The winner (window-local index i * KW + j, row-major, padded cells included) of every channel of
// window (n, oh, ow), channels_last.
template <typename T, typename A, typename I>
void WindowArgmax(const PoolParams& p, const T* xp, i64 n, i64 oh, i64 ow, A* best, I* arg) {
  const i64 h0 = oh * p.sh - p.pt, w0 = ow * p.sw - p.pl, C = p.C;
  bool first = true;
  for (i64 i = 0; i < p.KH; ++i) {
    const i64 h = h0 + i;
    const bool hin = h >= 0 && h < p.H;
    for (i64 j = 0; j < p.KW; ++j) {
      const i64 w = w0 + j;
      const I k = static_cast<I>(i * p.KW + j);
      if (hin && w >= 0 && w < p.W) {
        const T* src = xp + Offset(p.xl, n, h, w, 0);
        first ? ArgmaxStep<false, true>(src, best, arg, k, C)
              : ArgmaxStep<false, false>(src, best, arg, k, C);
      } else if (p.mode == kZeros) {
        first ? ArgmaxStep<true, true>(xp, best, arg, k, C)
              : ArgmaxStep<true, false>(xp, best, arg, k, C);
      } else {
        continue;
      }
      first = false;
    }
  }
}

struct MaxPoolForwardFast : ChannelsLastFast {  // (x) -> y
  template <typename T>
  static void Run(OpKernelContext* ctx, const PoolParams& p, const T* xp, const T*, T* yp) {
    typedef AccT<T> A;
    const i64 C = p.C;
    ParFor(ctx, p.N * p.OH, p.OW * p.KH * p.KW * C, [&](i64 b, i64 e) {
      std::vector<A> best(C);
      ForEachWindow<A>(p, b, e, [&](i64 n, i64 oh, i64 ow, i64 r0, i64 r1, i64 c0, i64 c1, A) {
        const T* first = xp + Offset(p.xl, n, r0, c0, 0);
        for (i64 c = 0; c < C; ++c) best[c] = static_cast<A>(first[c]);
        for (i64 h = r0; h < r1; ++h)
          for (i64 w = c0; w < c1; ++w)
            MaxStep<false>(xp + Offset(p.xl, n, h, w, 0), best.data(), C);
        // The value does not depend on the order, so the padded zeros can come last.
        if (p.mode == kZeros && (r1 - r0) * (c1 - c0) < p.KH * p.KW)
          MaxStep<true>(xp, best.data(), C);
        T* dst = yp + Offset(p.yl, n, oh, ow, 0);
        for (i64 c = 0; c < C; ++c) dst[c] = static_cast<T>(best[c]);
      });
    });
  }
};

// The two fast gradient algorithms (PoolGradFast in pool2d_cpu.h); in0 = x, in1 = dy.
struct MaxPoolGradImpl {
  template <typename T>
  static void WriteDisjoint(OpKernelContext* ctx, const PoolParams& p, const T* xp, const T* dyp,
                            T* dxp);
  template <typename T>
  static void ScatterOverlapping(OpKernelContext* ctx, const PoolParams& p, const T* xp,
                                 const T* dyp, T* dxp);
};

// Non-overlapping windows: each window writes its own cells of dx (the winner gets dy, the others
// 0); one output row per task.
template <typename T>
void MaxPoolGradImpl::WriteDisjoint(OpKernelContext* ctx, const PoolParams& p, const T* xp,
                                    const T* dyp, T* dxp) {
  typedef AccT<T> A;
  typedef typename SameWidthInt<A>::type I;
  const i64 C = p.C;
  ParFor(ctx, p.N * p.OH, p.OW * p.KH * p.KW * C * 2, [&](i64 b, i64 e) {
    std::vector<A> best(C);
    std::vector<I> arg(C);
    for (i64 u = b; u < e; ++u) {
      const i64 n = u / p.OH, oh = u % p.OH;
      for (i64 ow = 0; ow < p.OW; ++ow) {
        WindowArgmax<T, A, I>(p, xp, n, oh, ow, best.data(), arg.data());
        const T* __restrict g = dyp + Offset(p.yl, n, oh, ow, 0);
        const i64 h0 = oh * p.sh - p.pt, w0 = ow * p.sw - p.pl;
        for (i64 i = 0; i < p.KH; ++i) {
          const i64 h = h0 + i;
          if (h < 0 || h >= p.H) continue;
          for (i64 j = 0; j < p.KW; ++j) {
            const i64 w = w0 + j;
            if (w < 0 || w >= p.W) continue;
            const I k = static_cast<I>(i * p.KW + j);
            T* __restrict d = dxp + Offset(p.xl, n, h, w, 0);
            for (i64 c = 0; c < C; ++c) d[c] = arg[c] == k ? g[c] : T(0);
          }
        }
      }
    }
  });
}

// Overlapping windows: one image per task, scatter-add in the accumulation type.
template <typename T>
void MaxPoolGradImpl::ScatterOverlapping(OpKernelContext* ctx, const PoolParams& p, const T* xp,
                                         const T* dyp, T* dxp) {
  typedef AccT<T> A;
  typedef typename SameWidthInt<A>::type I;
  const i64 C = p.C;
  ParFor(ctx, p.N, p.OH * p.OW * p.KH * p.KW * C * 2, [&](i64 b, i64 e) {
    std::vector<A> best(C), acc(p.H * p.W * C);
    std::vector<I> arg(C);
    for (i64 n = b; n < e; ++n) {
      std::fill(acc.begin(), acc.end(), A(0));
      for (i64 oh = 0; oh < p.OH; ++oh)
        for (i64 ow = 0; ow < p.OW; ++ow) {
          WindowArgmax<T, A, I>(p, xp, n, oh, ow, best.data(), arg.data());
          const T* g = dyp + Offset(p.yl, n, oh, ow, 0);
          const i64 h0 = oh * p.sh - p.pt, w0 = ow * p.sw - p.pl;
          for (i64 c = 0; c < C; ++c) {
            const i64 h = h0 + arg[c] / p.KW, w = w0 + arg[c] % p.KW;
            if (h >= 0 && h < p.H && w >= 0 && w < p.W)  // a padded winner passes nothing
              acc[(h * p.W + w) * C + c] += static_cast<A>(g[c]);
          }
        }
      T* out = dxp + n * p.xl.sN;
      for (i64 i = 0; i < p.H * p.W * C; ++i) out[i] = static_cast<T>(acc[i]);
    }
  });
}

typedef PoolGradFast<MaxPoolGradImpl> MaxPoolGradFast;

template <typename T>
using MaxPool2DOp = CpuOp<T, kPoolForward, MaxPoolForwardStore, MaxPoolForwardFast>;
template <typename T>
using MaxPool2DGradOp = CpuOp<T, kMaxPoolGrad, MaxPoolGradStore, MaxPoolGradFast>;

}  // namespace
}  // namespace kce

#define KCE_REGISTER_CPU(T) \
  KCE_REGISTER_MAX_POOL2D(tensorflow::DEVICE_CPU, T, MaxPool2DOp, MaxPool2DGradOp);
KCE_CALL_TYPES(KCE_REGISTER_CPU)
#undef KCE_REGISTER_CPU
