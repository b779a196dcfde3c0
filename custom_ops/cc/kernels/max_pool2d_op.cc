// CPU kernels of KerasCnnExt>MaxPool2D and >MaxPool2DGrad. "Fast" algorithm (channels_last): a
// fused pad+pool window by window, never materializing the padded input, with the channel axis
// innermost in pieces of compile-time width (WithPieceWidth in pool2d_cpu.h); channels_first and
// KERAS_CNN_EXT_NATIVE_CPU_ALGO=direct run the per-element functors of pool2d_functors.h (the
// CUDA kernels' code). Every path ranks a window's cells with MaxBeats (NaN above every number,
// the first of equal cells in row-major order wins).
#define EIGEN_USE_THREADS

#include <limits>

#include "kernels/pool2d_cpu.h"

namespace kce {
namespace {

using tensorflow::OpKernelContext;

// A cell, or a run of cells merged before, of value v and cell k, after the cells of the winner
// so far (best, arg): it takes the win where it beats that winner. Two compares and two masked
// moves on the piece's vectors.
template <bool kArg, typename V, typename M>
inline void MaxStep(V v, M k, V* best, M* arg) {
  const M win = MaxBeats(v, *best);
  *best = win ? v : *best;
  if constexpr (kArg) *arg = win ? k : *arg;
}

// The winner of window `wc` for the K channels of a piece; xn: the window's image at the piece's
// first channel; cells k = i * KW + j in row-major order, padded ones counted. "The first of the
// best" is associative, so any grouping that keeps the cells in order finds the same winner: a
// window inside the input folds each of its rows on its own and merges the rows in order,
// KW - 1 + KH - 1 dependent steps instead of KH * KW - 1, whose latency bound the loop. Windows
// that reach into the padding go cell by cell from (-inf, first cell): -inf loses to every cell
// but a -inf, which leaves that state as it found it.
template <int K, bool kArg, typename T, typename V = typename Piece<K, T>::V,
          typename M = typename Piece<K, T>::M>
inline void FoldWindow(const PoolParams& p, const T* xn, const WindowCells& wc, V* best, M* arg) {
  typedef Piece<K, T> Q;
  typedef typename Q::I I;
  if (wc.r1 - wc.r0 == p.KH && wc.q1 - wc.q0 == p.KW) {
    for (i64 i = 0; i < p.KH; ++i) {
      const T* row = xn + ((wc.h0 + i) * p.W + wc.w0) * p.C;
      const I k0 = static_cast<I>(i * p.KW);
      V b = Q::Load(row);
      M a = M{} + k0;
      for (i64 j = 1; j < p.KW; ++j)
        MaxStep<kArg>(Q::Load(row + j * p.C), M{} + static_cast<I>(k0 + j), &b, &a);
      if (i == 0) {
        *best = b, *arg = a;
      } else {
        MaxStep<kArg>(b, a, best, arg);
      }
    }
    return;
  }
  const bool zeros = p.mode == kZeros;  // padded cells take part; "ignore": they are skipped
  *best = V{} - std::numeric_limits<typename Q::A>::infinity();
  *arg = M{} + static_cast<I>(zeros ? 0 : (wc.r0 - wc.h0) * p.KW + (wc.q0 - wc.w0));
  for (i64 i = 0; i < p.KH; ++i)
    for (i64 j = 0; j < p.KW; ++j) {
      const i64 h = wc.h0 + i, w = wc.w0 + j;
      const M k = M{} + static_cast<I>(i * p.KW + j);
      if (h >= wc.r0 && h < wc.r1 && w >= wc.q0 && w < wc.q1)
        MaxStep<kArg>(Q::Load(xn + (h * p.W + w) * p.C), k, best, arg);
      else if (zeros && InPadded(p, h, w))  // ceil_mode's cells past the padding: skipped
        MaxStep<kArg>(V{}, k, best, arg);
    }
}

// Output rows [b, e) of the flattened (n, oh) range.
template <int K, typename T>
void ForwardRows(const PoolParams& p, const T* xp, T* yp, i64 b, i64 e) {
  typename Piece<K, T>::V best;
  typename Piece<K, T>::M arg;
  for (i64 u = b; u < e; ++u) {
    const T* xn = xp + (u / p.OH) * p.xl.sN;
    T* y = yp + u * p.OW * p.C;
    for (i64 ow = 0; ow < p.OW; ++ow) {
      const WindowCells wc(p, u % p.OH, ow);
      ForPieces<K>(p.C, [&](i64 c0, i64) {
        FoldWindow<K, false>(p, xn + c0, wc, &best, &arg);
        Piece<K, T>::Store(best, y + ow * p.C + c0);
      });
    }
  }
}

// The gradient of output rows [b, e) of one image (xn: its x, g: its dy): each window's dy goes to
// its winning cell of dn (the image's dx, element type D), the window's other cells get 0. kAdd:
// added to dn (overlapping windows; adding 0 changes no sum), else stored (disjoint windows write
// each cell once). Selecting per cell, not scattering per channel, keeps the work in vectors. Up
// to kGroup pieces are folded before any is written, so that their loads overlap (at 64 channels
// and more the input comes from memory).
template <int K, bool kAdd, typename T, typename D>
void GradRows(const PoolParams& p, const T* xn, const T* g, D* dn, i64 b, i64 e) {
  typedef Piece<K, T> Q;
  typedef typename Q::M M;
  constexpr int kGroup = 4;
  typename Q::V best, dy[kGroup];
  M winner[kGroup], lane;
  for (int c = 0; c < Q::P; ++c) lane[c] = c;
  for (i64 oh = b; oh < e; ++oh)
    for (i64 ow = 0; ow < p.OW; ++ow) {
      const WindowCells wc(p, oh, ow);
      const T* gw = g + (oh * p.OW + ow) * p.C;
      ForPieceGroups<K, kGroup>(p.C, [&](int n, const i64* c0, const i64* s) {
        for (int q = 0; q < n; ++q) {
          FoldWindow<K, true>(p, xn + c0[q], wc, &best, &winner[q]);
          dy[q] = Q::Load(gw + c0[q]);
          // The channels this piece repeats were added by the previous one: no cell wins there.
          const M skip = lane < M{} + static_cast<typename Q::I>(s[q] - c0[q]);
          if (kAdd && s[q] > c0[q]) winner[q] = skip ? M{} - 1 : winner[q];
        }
        auto write = [&](int q, i64 h, i64 w) {  // piece q of cell (h, w)
          const auto k = static_cast<typename Q::I>((h - wc.h0) * p.KW + (w - wc.w0));
          D* d = dn + (h * p.W + w) * p.C + c0[q];
          if constexpr (std::is_same<D, typename Q::A>::value) {  // float, double
            const typename Q::V v = winner[q] == k ? dy[q] : typename Q::V{};
            Q::Store(kAdd ? Q::Load(d) + v : v, d);
          } else {  // half, bfloat16: dy copied without a conversion
            for (int c = 0; c < K; ++c) d[c] = winner[q][c] == k ? gw[c0[q] + c] : D(0);
          }
        };
        // Cell by cell, a cell's pieces together; piece by piece where pieces overlap and add, so
        // that no load of dn waits for the previous piece's store to an overlapping place.
        const bool by_piece = kAdd && p.C % K != 0;
        for (int q0 = 0; q0 < (by_piece ? n : 1); ++q0)
          for (i64 h = wc.r0; h < wc.r1; ++h)
            for (i64 w = wc.q0; w < wc.q1; ++w)
              for (int q = by_piece ? q0 : 0; q < (by_piece ? q0 + 1 : n); ++q) write(q, h, w);
      });
    }
}

struct MaxPoolForwardFast : ChannelsLastFast {  // (x) -> y
  template <typename T>
  static void Run(OpKernelContext* ctx, const PoolParams& p, const T* xp, const T*, T* yp) {
    ParFor(ctx, p.N * p.OH, p.OW * p.KH * p.KW * p.C, [&](i64 b, i64 e) {
      WithPieceWidth<AccT<T>>(p.C, [&](auto k) {
        ForwardRows<decltype(k)::value>(p, xp, yp, b, e);
      });
    });
  }
};

// The two fast gradient algorithms (PoolGradFast in pool2d_cpu.h); in0 = x, in1 = dy.
struct MaxPoolGradImpl {
  // Non-overlapping windows: each window writes its own cells of dx; whole output rows per task.
  template <typename T>
  static void WriteDisjoint(OpKernelContext* ctx, const PoolParams& p, const T* xp,
                            const T* dyp, T* dxp) {
    ParFor(ctx, p.N * p.OH, p.OW * p.KH * p.KW * p.C * 2, [&](i64 b, i64 e) {
      WithPieceWidth<AccT<T>>(p.C, [&](auto k) {
        for (i64 u = b; u < e;) {  // the rows of one image at a time
          const i64 n = u / p.OH, end = std::min(e, (n + 1) * p.OH), img = n * p.xl.sN;
          GradRows<decltype(k)::value, false>(p, xp + img, dyp + n * p.OH * p.OW * p.C,
                                              dxp + img, u % p.OH, u % p.OH + end - u);
          u = end;
        }
      });
    });
  }

  // Overlapping windows: the windows' dy summed per image (ScatterImages).
  template <typename T>
  static void ScatterOverlapping(OpKernelContext* ctx, const PoolParams& p, const T* xp,
                                 const T* dyp, T* dxp) {
    const i64 cost = p.OH * p.OW * p.KH * p.KW * p.C * 2;
    ScatterImages(ctx, p, cost, dxp, [&](i64 n, AccT<T>* acc) {
      WithPieceWidth<AccT<T>>(p.C, [&](auto k) {
        GradRows<decltype(k)::value, true>(p, xp + n * p.xl.sN, dyp + n * p.OH * p.OW * p.C,
                                           acc, 0, p.OH);
      });
    });
  }
};

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
