// CPU kernels of the correlation ops for groups > 1 (corr2d_op.cc dispatches here; groups == 1
// keeps its own code): a depthwise path for channels_last inputs with one input channel per group
// (MobileNet's depthwise convolution, or a channel multiplier F = k * C), and per-group im2col +
// GEMM for everything else (ResNeXt's 32 groups, channels_first).
#ifndef KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_CORR2D_GROUPED_H_
#define KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_CORR2D_GROUPED_H_

#include <algorithm>
#include <vector>

#include "kernels/corr2d_im2col.h"
#include "kernels/cpu_util.h"

namespace kce {

// Depthwise: one input channel per group, channels_last. Output channel f reads input channel
// f / Fg; the kernel (KH, KW, 1, F) is a row of F weights per tap.
inline bool UseDepthwise(const CorrParams& p) { return p.G > 1 && p.Cg == 1 && p.xl.sC == 1; }

// Channels per register block of the depthwise forward pass: a fixed trip count keeps the
// accumulators in vector registers across the taps.
constexpr i64 kDepthwiseChunk = 16;

// The taps of output pixel (oh, ow) that read a real (or replicated / reflected) cell: element
// offsets into the image (channels_last) and into the kernel (tap index * F). Returns the count.
inline i64 DepthwiseTaps(const CorrParams& p, const CorrTables& tab, i64 oh, i64 ow, i64* xoff,
                         i64* woff) {
  i64 k = 0;
  for (i64 m = 0; m < p.KH; ++m) {
    const i64 hh = tab.htab[oh * p.KH + m];
    if (hh < 0) continue;
    for (i64 q = 0; q < p.KW; ++q) {
      const i64 ww = tab.wtab[ow * p.KW + q];
      if (ww < 0) continue;
      xoff[k] = hh * p.xl.sH + ww * p.C;
      woff[k] = (m * p.KW + q) * p.F;
      ++k;
    }
  }
  return k;
}

struct DepthwiseForward {
  template <typename T>
  static void Run(tensorflow::OpKernelContext* ctx, const CorrParams& p, const T* xp, const T* wp,
                  T* yp) {
    typedef AccT<T> A;
    const CorrTables tab(p);
    const i64 taps = p.KH * p.KW, F = p.F, Fg = p.Fg;
    ParFor(ctx, p.N * p.OH, p.OW * taps * F, [&](i64 b, i64 e) {
      std::vector<i64> xoff(taps), woff(taps);
      std::vector<A> acc(F);
      for (i64 u = b; u < e; ++u) {
        const i64 n = u / p.OH, oh = u % p.OH;
        const T* xn = xp + n * p.xl.sN;
        for (i64 ow = 0; ow < p.OW; ++ow) {
          const i64 k = DepthwiseTaps(p, tab, oh, ow, xoff.data(), woff.data());
          T* y = yp + n * p.yl.sN + oh * p.yl.sH + ow * F;
          if (Fg == 1) {
            i64 c0 = 0;
            for (; c0 + kDepthwiseChunk <= F; c0 += kDepthwiseChunk) {
              A a[kDepthwiseChunk] = {};
              for (i64 t = 0; t < k; ++t) {
                const T* __restrict xs = xn + xoff[t] + c0;
                const T* __restrict ws = wp + woff[t] + c0;
                for (i64 j = 0; j < kDepthwiseChunk; ++j)
                  a[j] += static_cast<A>(xs[j]) * static_cast<A>(ws[j]);
              }
              for (i64 j = 0; j < kDepthwiseChunk; ++j) y[c0 + j] = static_cast<T>(a[j]);
            }
            if (c0 < F) {
              std::fill(acc.begin(), acc.end(), A(0));
              for (i64 t = 0; t < k; ++t)
                for (i64 j = c0; j < F; ++j)
                  acc[j] += static_cast<A>(xn[xoff[t] + j]) * static_cast<A>(wp[woff[t] + j]);
              for (i64 j = c0; j < F; ++j) y[j] = static_cast<T>(acc[j]);
            }
          } else {  // channel multiplier: filters [c*Fg, (c+1)*Fg) read input channel c
            std::fill(acc.begin(), acc.end(), A(0));
            for (i64 t = 0; t < k; ++t) {
              const T* xs = xn + xoff[t];
              const T* ws = wp + woff[t];
              for (i64 c = 0; c < p.C; ++c) {
                const A xv = static_cast<A>(xs[c]);
                for (i64 j = c * Fg; j < (c + 1) * Fg; ++j) acc[j] += xv * static_cast<A>(ws[j]);
              }
            }
            for (i64 j = 0; j < F; ++j) y[j] = static_cast<T>(acc[j]);
          }
        }
      }
    });
  }
};

struct DepthwiseBackpropInput {
  template <typename T>
  static void Run(tensorflow::OpKernelContext* ctx, const CorrParams& p, const T* wp,
                  const T* dyp, T* dxp) {
    typedef AccT<T> A;
    const CorrTables tab(p);
    const i64 taps = p.KH * p.KW, F = p.F, Fg = p.Fg, C = p.C;
    // One image per task: each output pixel's upstream gradient, weighted per tap, scatters onto
    // the source cells of its taps (padded cells fold onto their source through the tables).
    ParFor(ctx, p.N, p.OH * p.OW * taps * F * 2, [&](i64 b, i64 e) {
      std::vector<i64> xoff(taps), woff(taps);
      std::vector<A> acc(p.H * p.W * C);
      for (i64 n = b; n < e; ++n) {
        std::fill(acc.begin(), acc.end(), A(0));
        for (i64 oh = 0; oh < p.OH; ++oh)
          for (i64 ow = 0; ow < p.OW; ++ow) {
            const i64 k = DepthwiseTaps(p, tab, oh, ow, xoff.data(), woff.data());
            const T* __restrict g = dyp + n * p.yl.sN + oh * p.yl.sH + ow * F;
            for (i64 t = 0; t < k; ++t) {
              A* __restrict d = acc.data() + xoff[t];
              const T* __restrict ws = wp + woff[t];
              if (Fg == 1) {
                for (i64 c = 0; c < C; ++c)
                  d[c] += static_cast<A>(g[c]) * static_cast<A>(ws[c]);
              } else {
                for (i64 c = 0; c < C; ++c) {
                  A s = A(0);
                  for (i64 j = c * Fg; j < (c + 1) * Fg; ++j)
                    s += static_cast<A>(g[j]) * static_cast<A>(ws[j]);
                  d[c] += s;
                }
              }
            }
          }
        T* out = dxp + n * p.xl.sN;
        for (i64 i = 0; i < p.H * p.W * C; ++i) out[i] = static_cast<T>(acc[i]);
      }
    });
  }
};

struct DepthwiseBackpropFilter {
  template <typename T>
  static void Run(tensorflow::OpKernelContext* ctx, const CorrParams& p, const T* xp,
                  const T* dyp, T* dwp) {
    typedef AccT<T> A;
    const CorrTables tab(p);
    const i64 taps = p.KH * p.KW, F = p.F, Fg = p.Fg, units = p.N * p.OH;
    // Each thread group sums x * dy over its share of the output rows into a partial kernel
    // gradient (taps x F, small enough for L1), then the partials are added in order.
    const i64 parts = std::min<i64>(units, NumThreads(ctx));
    std::vector<A> partial(parts * taps * F, A(0));
    ParFor(ctx, parts, i64{1} << 40, [&](i64 gb, i64 ge) {
      std::vector<i64> xoff(taps), woff(taps);
      for (i64 g = gb; g < ge; ++g) {
        A* part = partial.data() + g * taps * F;
        for (i64 u = g * units / parts; u < (g + 1) * units / parts; ++u) {
          const i64 n = u / p.OH, oh = u % p.OH;
          const T* xn = xp + n * p.xl.sN;
          for (i64 ow = 0; ow < p.OW; ++ow) {
            const i64 k = DepthwiseTaps(p, tab, oh, ow, xoff.data(), woff.data());
            const T* __restrict dy = dyp + n * p.yl.sN + oh * p.yl.sH + ow * F;
            for (i64 t = 0; t < k; ++t) {
              const T* __restrict xs = xn + xoff[t];
              A* __restrict d = part + woff[t];
              if (Fg == 1) {
                for (i64 f = 0; f < F; ++f) d[f] += static_cast<A>(xs[f]) * static_cast<A>(dy[f]);
              } else {
                for (i64 f = 0; f < F; ++f)
                  d[f] += static_cast<A>(xs[f / Fg]) * static_cast<A>(dy[f]);
              }
            }
          }
        }
      }
    });
    for (i64 g = 1; g < parts; ++g)
      for (i64 i = 0; i < taps * F; ++i) partial[i] += partial[g * taps * F + i];
    for (i64 i = 0; i < taps * F; ++i) dwp[i] = static_cast<T>(partial[i]);
  }
};

// Per-group im2col + GEMM. The kernel is a (K x F) row-major matrix, K = KH * KW * Cg; group g
// multiplies its own im2col block (channels [g*Cg, (g+1)*Cg)) with columns [g*Fg, (g+1)*Fg).

// Stores a column-major rows x Fg block (filters [f0, f0 + Fg)) at output rows [p0, p0 + rows)
// of image n in y's layout.
template <typename T, typename A>
void StoreGroupBlock(const CorrParams& p, const A* out, T* yp, i64 n, i64 p0, i64 rows, i64 f0) {
  const i64 P = p.OH * p.OW;
  T* base = yp + n * p.yl.sN;
  if (p.yl.sC == 1) {
    for (i64 r = 0; r < rows; ++r)
      for (i64 f = 0; f < p.Fg; ++f)
        base[(p0 + r) * p.F + f0 + f] = static_cast<T>(out[f * rows + r]);
  } else {
    for (i64 f = 0; f < p.Fg; ++f)
      for (i64 r = 0; r < rows; ++r)
        base[(f0 + f) * P + p0 + r] = static_cast<T>(out[f * rows + r]);
  }
}

struct GroupedForward {
  template <typename T>
  static void Run(tensorflow::OpKernelContext* ctx, const CorrParams& p, const T* xp, const T* wp,
                  T* yp) {
    typedef AccT<T> A;
    const i64 K = p.KH * p.KW * p.Cg;
    const i64 P = p.OH * p.OW, R = BlockRows(K, P), blocks = (P + R - 1) / R;
    const CorrTables tab(p);
    const bool tapmajor = UseTapMajor(p);
    std::vector<A> wstore;
    Eigen::Map<const RowMat<A>> Wm(KernelAsAcc<T, A>(wp, K * p.F, &wstore), K, p.F);
    ParFor(ctx, p.N * blocks, R * K * p.F, [&](i64 b, i64 e) {
      std::vector<A> buf(R * K), out(R * p.Fg);
      for (i64 u = b; u < e; ++u) {
        const i64 n = u / blocks, p0 = (u % blocks) * R, rows = std::min(R, P - p0);
        for (i64 g = 0; g < p.G; ++g) {
          const auto Wg = Wm.middleCols(g * p.Fg, p.Fg);
          Eigen::Map<ColMat<A>> Y(out.data(), rows, p.Fg);
          if (tapmajor) {
            Im2ColTapMajor<T, A>(p, tab, xp, n, p0, rows, buf.data(), g * p.Cg);
            Y.noalias() = Eigen::Map<const ColMat<A>>(buf.data(), rows, K) * Wg;
          } else {
            Im2Col<T, A>(p, tab, xp, n, p0, rows, buf.data(), g * p.Cg);
            Y.noalias() = Eigen::Map<const RowMat<A>>(buf.data(), rows, K) * Wg;
          }
          StoreGroupBlock<T, A>(p, out.data(), yp, n, p0, rows, g * p.Fg);
        }
      }
    });
  }
};

struct GroupedBackpropInput {
  template <typename T>
  static void Run(tensorflow::OpKernelContext* ctx, const CorrParams& p, const T* wp,
                  const T* dyp, T* dxp) {
    typedef AccT<T> A;
    const i64 K = p.KH * p.KW * p.Cg, P = p.OH * p.OW, R = BlockRows(K, P);
    const CorrTables tab(p);
    const bool tapmajor = UseTapMajor(p);
    std::vector<A> wstore;
    Eigen::Map<const RowMat<A>> Wm(KernelAsAcc<T, A>(wp, K * p.F, &wstore), K, p.F);
    ParFor(ctx, p.N, P * K * p.F * 2, [&](i64 b, i64 e) {
      std::vector<A> acc(p.H * p.W * p.C), cols(R * K), dyb(R * p.F);
      for (i64 n = b; n < e; ++n) {
        std::fill(acc.begin(), acc.end(), A(0));
        for (i64 p0 = 0; p0 < P; p0 += R) {
          const i64 rows = std::min(R, P - p0);
          LoadRows<T, A>(p, dyp, n, p0, rows, dyb.data());
          Eigen::Map<const RowMat<A>> D(dyb.data(), rows, p.F);
          for (i64 g = 0; g < p.G; ++g) {
            const auto Dg = D.middleCols(g * p.Fg, p.Fg);
            const auto Wg = Wm.middleCols(g * p.Fg, p.Fg);
            if (tapmajor) {
              Eigen::Map<ColMat<A>>(cols.data(), rows, K).noalias() = Dg * Wg.transpose();
              Col2ImTapMajor<A>(p, tab, cols.data(), p0, rows, acc.data(), g * p.Cg);
            } else {
              Eigen::Map<RowMat<A>>(cols.data(), rows, K).noalias() = Dg * Wg.transpose();
              Col2Im<A>(p, tab, cols.data(), p0, rows, acc.data(), g * p.Cg);
            }
          }
        }
        T* out = dxp + n * p.xl.sN;
        const i64 HW = p.H * p.W;
        if (p.xl.sC == 1) {
          for (i64 i = 0; i < HW * p.C; ++i) out[i] = static_cast<T>(acc[i]);
        } else {
          for (i64 i = 0; i < HW; ++i)
            for (i64 c = 0; c < p.C; ++c) out[c * HW + i] = static_cast<T>(acc[i * p.C + c]);
        }
      }
    });
  }
};

struct GroupedBackpropFilter {
  template <typename T>
  static void Run(tensorflow::OpKernelContext* ctx, const CorrParams& p, const T* xp,
                  const T* dyp, T* dwp) {
    typedef AccT<T> A;
    const i64 K = p.KH * p.KW * p.Cg, P = p.OH * p.OW, R = BlockRows(K, P, i64{1} << 19);
    const i64 blocks = (P + R - 1) / R, units = p.N * blocks;
    const CorrTables tab(p);
    const bool tapmajor = UseTapMajor(p);
    const i64 parts = std::min<i64>(units, NumThreads(ctx));
    std::vector<A> partial(parts * K * p.F, A(0));
    ParFor(ctx, parts, i64{1} << 40, [&](i64 gb, i64 ge) {
      std::vector<A> cols(R * K), dyb(R * p.F);
      for (i64 part = gb; part < ge; ++part) {
        Eigen::Map<ColMat<A>> Gm(partial.data() + part * K * p.F, K, p.F);
        for (i64 u = part * units / parts; u < (part + 1) * units / parts; ++u) {
          const i64 n = u / blocks, p0 = (u % blocks) * R, rows = std::min(R, P - p0);
          LoadRows<T, A>(p, dyp, n, p0, rows, dyb.data());
          Eigen::Map<const RowMat<A>> D(dyb.data(), rows, p.F);
          for (i64 g = 0; g < p.G; ++g) {
            const auto Dg = D.middleCols(g * p.Fg, p.Fg);
            auto Gg = Gm.middleCols(g * p.Fg, p.Fg);
            if (tapmajor) {
              Im2ColTapMajor<T, A>(p, tab, xp, n, p0, rows, cols.data(), g * p.Cg);
              Gg.noalias() += Eigen::Map<const ColMat<A>>(cols.data(), rows, K).transpose() * Dg;
            } else {
              Im2Col<T, A>(p, tab, xp, n, p0, rows, cols.data(), g * p.Cg);
              Gg.noalias() += Eigen::Map<const RowMat<A>>(cols.data(), rows, K).transpose() * Dg;
            }
          }
        }
      }
    });
    for (i64 g = 1; g < parts; ++g)
      for (i64 i = 0; i < K * p.F; ++i) partial[i] += partial[g * K * p.F + i];
    for (i64 k = 0; k < K; ++k)
      for (i64 f = 0; f < p.F; ++f) dwp[k * p.F + f] = static_cast<T>(partial[f * K + k]);
  }
};

}  // namespace kce

#endif  // KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_CORR2D_GROUPED_H_
