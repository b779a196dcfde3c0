// CPU building blocks of the "fast" correlation kernels (corr2d_op.cc): im2col / col2im between an
// image and a cache-sized block of patch rows, in row-major and tap-major order, computed from
// source-index tables built once per op call with the shared functors (MapCoord, Tap).
#ifndef KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_CORR2D_IM2COL_H_
#define KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_CORR2D_IM2COL_H_

#include <algorithm>
#include <type_traits>
#include <vector>

#include "kernels/corr2d_functors.h"

namespace kce {

// Rows of the im2col buffer per block: `budget` elements (the kernel gradient wants deep blocks,
// since the block's rows are the inner dimension of its GEMM).
inline i64 BlockRows(i64 K, i64 P, i64 budget = i64{1} << 18) {
  const i64 r = std::max<i64>(16, budget / std::max<i64>(K, 1));
  return std::max<i64>(1, std::min(r, P));
}

// Source-index tables of the im2col / col2im loops, computed once per op call with the shared
// functors (MapCoord, Tap): htab[oh * KH + m] is the source row of tap m of output row oh (-1: a
// zero cell; dilation included), wtab[ow * KW + q] likewise for columns; wrun[ow] tells whether the
// KW source columns of output column ow are consecutive (then a window row is one contiguous run of
// KW * C values in channels_last layout; never with a dilation > 1 and KW > 1).
struct CorrTables {
  std::vector<i64> htab, wtab;
  std::vector<char> wrun;
  explicit CorrTables(const CorrParams& p)
      : htab(p.OH * p.KH), wtab(p.OW * p.KW), wrun(p.OW) {
    for (i64 oh = 0; oh < p.OH; ++oh)
      for (i64 m = 0; m < p.KH; ++m)
        htab[oh * p.KH + m] =
            MapCoord(oh * p.sh + Tap(m, p.KH, p.flip) * p.dh - p.pt, p.H, p.mode);
    for (i64 ow = 0; ow < p.OW; ++ow) {
      bool run = true;
      for (i64 q = 0; q < p.KW; ++q) {
        const i64 v = MapCoord(ow * p.sw + Tap(q, p.KW, p.flip) * p.dw - p.pl, p.W, p.mode);
        wtab[ow * p.KW + q] = v;
        if (v < 0 || (q > 0 && v != wtab[ow * p.KW] + q)) run = false;
      }
      wrun[ow] = run;
    }
  }
};

// Fills rows [p0, p0 + rows) of image n's im2col matrix (row = output pixel, column = (m, q, c))
// over the Cg channels [c0, c0 + Cg) of one group (all C channels when groups == 1).
template <typename T, typename A>
void Im2Col(const CorrParams& p, const CorrTables& tab, const T* x, i64 n, i64 p0, i64 rows,
            A* __restrict buf, i64 c0 = 0) {
  const i64 K = p.KH * p.KW * p.Cg, C = p.Cg, KWC = p.KW * p.Cg, XC = p.C;
  const bool cl = p.xl.sC == 1;
  for (i64 r = 0; r < rows; ++r) {
    const i64 pix = p0 + r, oh = pix / p.OW, ow = pix % p.OW;
    const i64* hrow = tab.htab.data() + oh * p.KH;
    const i64* wcol = tab.wtab.data() + ow * p.KW;
    const bool run = cl && tab.wrun[ow] && C == XC;
    A* dst = buf + r * K;
    for (i64 m = 0; m < p.KH; ++m, dst += KWC) {
      const i64 hh = hrow[m];
      if (hh < 0) {
        std::fill(dst, dst + KWC, A(0));
        continue;
      }
      const T* base = x + n * p.xl.sN + hh * p.xl.sH + c0 * p.xl.sC;
      if (run) {
        const T* __restrict src = base + wcol[0] * C;
        for (i64 i = 0; i < KWC; ++i) dst[i] = static_cast<A>(src[i]);
        continue;
      }
      for (i64 q = 0; q < p.KW; ++q) {
        const i64 ww = wcol[q];
        A* d = dst + q * C;
        if (ww < 0) {
          std::fill(d, d + C, A(0));
        } else if (cl) {
          const T* __restrict src = base + ww * XC;
          for (i64 c = 0; c < C; ++c) d[c] = static_cast<A>(src[c]);
        } else {
          const T* src = base + ww;
          for (i64 c = 0; c < C; ++c) d[c] = static_cast<A>(src[c * p.xl.sC]);
        }
      }
    }
  }
}

// Adds rows [p0, p0 + rows) of a column-gradient matrix back onto image n's input gradient
// (acc: H * W * C, channels last); padded cells fold onto their source cell. Columns over the Cg
// channels [c0, c0 + Cg) of one group.
template <typename A>
void Col2Im(const CorrParams& p, const CorrTables& tab, const A* cols, i64 p0, i64 rows,
            A* __restrict acc, i64 c0 = 0) {
  const i64 K = p.KH * p.KW * p.Cg, C = p.Cg, KWC = p.KW * p.Cg, XC = p.C;
  for (i64 r = 0; r < rows; ++r) {
    const i64 pix = p0 + r, oh = pix / p.OW, ow = pix % p.OW;
    const i64* hrow = tab.htab.data() + oh * p.KH;
    const i64* wcol = tab.wtab.data() + ow * p.KW;
    const bool run = tab.wrun[ow] && C == XC;
    const A* src = cols + r * K;
    for (i64 m = 0; m < p.KH; ++m, src += KWC) {
      const i64 hh = hrow[m];
      if (hh < 0) continue;
      A* base = acc + hh * p.W * XC + c0;
      if (run) {
        A* __restrict d = base + wcol[0] * C;
        const A* __restrict s = src;
        for (i64 i = 0; i < KWC; ++i) d[i] += s[i];
        continue;
      }
      for (i64 q = 0; q < p.KW; ++q) {
        const i64 ww = wcol[q];
        if (ww < 0) continue;
        A* __restrict d = base + ww * XC;
        const A* __restrict s = src + q * C;
        for (i64 c = 0; c < C; ++c) d[c] += s[c];
      }
    }
  }
}

// "Tap-major" (column-major, buf[k * rows + r]) variants for channels_last inputs with few
// channels (LeNet's C = 1, RGB's C = 3): a row-major im2col row would be a string of KH runs of only
// KW * C values, while a tap-major column is a run over a whole output row.
inline bool UseTapMajor(const CorrParams& p) { return p.xl.sC == 1 && p.Cg <= 4; }

template <typename T, typename A>
void Im2ColTapMajor(const CorrParams& p, const CorrTables& tab, const T* x, i64 n, i64 p0,
                    i64 rows, A* __restrict buf, i64 c0 = 0) {
  const i64 C = p.Cg, XC = p.C;
  const T* xn = x + n * p.xl.sN + c0;
  for (i64 r0 = 0; r0 < rows;) {
    const i64 pix = p0 + r0, oh = pix / p.OW, ow0 = pix % p.OW;
    const i64 len = std::min(rows - r0, p.OW - ow0);
    for (i64 m = 0; m < p.KH; ++m) {
      const i64 hh = tab.htab[oh * p.KH + m];
      for (i64 q = 0; q < p.KW; ++q) {
        const i64* wc = tab.wtab.data() + ow0 * p.KW + q;
        for (i64 c = 0; c < C; ++c) {
          A* __restrict d = buf + ((m * p.KW + q) * C + c) * rows + r0;
          if (hh < 0) {
            std::fill(d, d + len, A(0));
            continue;
          }
          const T* src = xn + hh * p.xl.sH + c;
          for (i64 j = 0; j < len; ++j) {
            const i64 ww = wc[j * p.KW];
            d[j] = ww < 0 ? A(0) : static_cast<A>(src[ww * XC]);
          }
        }
      }
    }
    r0 += len;
  }
}

template <typename A>
void Col2ImTapMajor(const CorrParams& p, const CorrTables& tab, const A* cols, i64 p0, i64 rows,
                    A* acc, i64 c0 = 0) {
  const i64 C = p.Cg, XC = p.C;
  for (i64 r0 = 0; r0 < rows;) {
    const i64 pix = p0 + r0, oh = pix / p.OW, ow0 = pix % p.OW;
    const i64 len = std::min(rows - r0, p.OW - ow0);
    for (i64 m = 0; m < p.KH; ++m) {
      const i64 hh = tab.htab[oh * p.KH + m];
      if (hh < 0) continue;
      A* base = acc + hh * p.W * XC + c0;
      for (i64 q = 0; q < p.KW; ++q) {
        const i64* wc = tab.wtab.data() + ow0 * p.KW + q;
        for (i64 c = 0; c < C; ++c) {
          const A* s = cols + ((m * p.KW + q) * C + c) * rows + r0;
          for (i64 j = 0; j < len; ++j) {
            const i64 ww = wc[j * p.KW];
            if (ww >= 0) base[ww * XC + c] += s[j];
          }
        }
      }
    }
    r0 += len;
  }
}

// Kernel (K x F, row-major) as a matrix of the accumulation type.
template <typename T, typename A>
const A* KernelAsAcc(const T* w, i64 n, std::vector<A>* store) {
  if constexpr (std::is_same<T, A>::value) {
    return w;
  } else {
    store->resize(n);
    for (i64 i = 0; i < n; ++i) (*store)[i] = static_cast<A>(w[i]);
    return store->data();
  }
}

// Copies rows [p0, p0 + rows) x F of image n's upstream gradient into a row-major A matrix.
template <typename T, typename A>
void LoadRows(const CorrParams& p, const T* dy, i64 n, i64 p0, i64 rows, A* out) {
  const i64 P = p.OH * p.OW;
  const T* base = dy + n * p.yl.sN;
  if (p.yl.sC == 1) {
    for (i64 r = 0; r < rows; ++r)
      for (i64 f = 0; f < p.F; ++f) out[r * p.F + f] = static_cast<A>(base[(p0 + r) * p.F + f]);
  } else {
    for (i64 f = 0; f < p.F; ++f)
      for (i64 r = 0; r < rows; ++r) out[r * p.F + f] = static_cast<A>(base[f * P + p0 + r]);
  }
}

}  // namespace kce

#endif  // KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_CORR2D_IM2COL_H_
