// Per-element index math shared by the CPU kernels (kce_kernels_cpu.cc) and the CUDA kernels
// (kce_kernels_gpu.cu.cc). Nothing in here includes a TensorFlow header, so the CUDA file stays a
// plain CUDA translation unit that compiles in seconds.
//
// Conventions (DESIGN.md section 3):
//   * a padded coordinate i of an axis of size `size` with `before` cells of padding refers to the
//     source cell i - before; `map_coord` turns an unpadded coordinate into the source index
//     (-1: a zero cell) for the padding modes zeros / replicate (numpy 'edge') / reflect (numpy
//     'reflect', a single reflection that excludes the edge; requires before, after < size);
//   * kernel tap m of a window starting at padded row o*s reads padded row o*s + tap(m), with
//     tap(m) = m for cross-correlation and KH-1-m for the mathematical convolution (flipped kernel);
//   * max pooling: the first maximal cell of a window in row-major order wins (strict '>'), padded
//     zero cells ("zeros" mode) take part in that order and pass no gradient when they win; a NaN
//     cell never wins against a number (TensorFlow's rule; a window of NaN only gives NaN).
#ifndef KERAS_CNN_EXT_CUSTOM_OPS_KCE_FUNCTORS_H_
#define KERAS_CNN_EXT_CUSTOM_OPS_KCE_FUNCTORS_H_

#include <cstdint>

#if defined(__CUDACC__)
#define KCE_HD __host__ __device__ __forceinline__
#else
#define KCE_HD inline
#endif

namespace kce {

typedef int64_t i64;

enum PadMode : int { kZeros = 0, kReplicate = 1, kReflect = 2, kIgnore = 3 };

// Element strides of a 4-D tensor addressed logically as (n, h, w, c).
struct Layout {
  i64 sN, sH, sW, sC;
};

KCE_HD Layout MakeLayout(bool channels_last, i64 H, i64 W, i64 C) {
  Layout l;
  if (channels_last) {
    l.sC = 1; l.sW = C; l.sH = W * C; l.sN = H * W * C;
  } else {
    l.sW = 1; l.sH = W; l.sC = H * W; l.sN = C * H * W;
  }
  return l;
}

KCE_HD i64 Offset(const Layout& l, i64 n, i64 h, i64 w, i64 c) {
  return n * l.sN + h * l.sH + w * l.sW + c * l.sC;
}

// Source index of unpadded coordinate i (may be < 0 or >= size), or -1 for a zero/ignored cell.
KCE_HD i64 MapCoord(i64 i, i64 size, int mode) {
  if (i >= 0 && i < size) return i;
  if (mode == kReplicate) return i < 0 ? 0 : size - 1;
  if (mode == kReflect) return i < 0 ? -i : 2 * (size - 1) - i;
  return -1;
}

// The padded coordinates (in [0, before + size + after)) whose value is source cell h: at most three
// inclusive ranges. Used by the gather form of the input gradient (the GPU path and the CPU
// "direct" path): the gradient of a replicated / reflected cell folds back onto its source.
KCE_HD int PadSources(i64 h, i64 size, i64 before, i64 after, int mode, i64* lo, i64* hi) {
  if (mode == kReplicate) {
    lo[0] = (h == 0) ? 0 : h + before;
    hi[0] = (h == size - 1) ? before + size - 1 + after : h + before;
    return 1;
  }
  int k = 0;
  lo[k] = hi[k] = h + before; ++k;
  if (mode == kReflect) {
    if (h >= 1 && h <= before) { lo[k] = hi[k] = before - h; ++k; }
    const i64 b = size - 2 - h;  // offset into the bottom padding
    if (b >= 0 && b < after) { lo[k] = hi[k] = before + size + b; ++k; }
  }
  return k;
}

KCE_HD i64 Tap(i64 m, i64 k, bool flip) { return flip ? k - 1 - m : m; }

// Accumulation type of element type T (float for half / bfloat16 / float).
template <typename T> struct AccOf { typedef float type; };
template <> struct AccOf<double> { typedef double type; };

// Splits a flat index over (n, a, b, c) with c fastest.
KCE_HD void Unflatten(i64 i, i64 A, i64 B, i64 C, i64* n, i64* a, i64* b, i64* c) {
  *c = i % C; i /= C;
  *b = i % B; i /= B;
  *a = i % A;
  *n = i / A;
}

struct CorrParams {
  i64 N, H, W, C;     // input
  i64 KH, KW, F;      // kernel (KH, KW, C, F)
  i64 OH, OW;         // output
  i64 sh, sw;         // strides
  i64 pt, pb, pl, pr; // padding
  int mode;           // PadMode (zeros / replicate / reflect)
  bool flip;          // convolution
  Layout xl, yl;      // input / output layouts
};

// y[n, oh, ow, f]; idx enumerates (n, oh, ow, f) with f fastest.
template <typename T, typename Acc>
KCE_HD Acc CorrForwardElem(const CorrParams& p, const T* x, const T* w, i64 idx) {
  i64 n, oh, ow, f;
  Unflatten(idx, p.OH, p.OW, p.F, &n, &oh, &ow, &f);
  Acc acc = Acc(0);
  for (i64 m = 0; m < p.KH; ++m) {
    const i64 r = MapCoord(oh * p.sh + Tap(m, p.KH, p.flip) - p.pt, p.H, p.mode);
    if (r < 0) continue;
    for (i64 q = 0; q < p.KW; ++q) {
      const i64 s = MapCoord(ow * p.sw + Tap(q, p.KW, p.flip) - p.pl, p.W, p.mode);
      if (s < 0) continue;
      const T* xp = x + Offset(p.xl, n, r, s, 0);
      const T* wp = w + (m * p.KW + q) * p.C * p.F + f;
      for (i64 c = 0; c < p.C; ++c)
        acc += static_cast<Acc>(xp[c * p.xl.sC]) * static_cast<Acc>(wp[c * p.F]);
    }
  }
  return acc;
}

// dx[n, h, w, c] (gather form); idx enumerates (n, h, w, c) with c fastest.
template <typename T, typename Acc>
KCE_HD Acc CorrBackpropInputElem(const CorrParams& p, const T* w, const T* dy, i64 idx) {
  i64 n, xh, xw, c;
  Unflatten(idx, p.H, p.W, p.C, &n, &xh, &xw, &c);
  i64 rlo[3], rhi[3], clo[3], chi[3];
  const int nr = PadSources(xh, p.H, p.pt, p.pb, p.mode, rlo, rhi);
  const int nc = PadSources(xw, p.W, p.pl, p.pr, p.mode, clo, chi);
  Acc acc = Acc(0);
  for (int a = 0; a < nr; ++a) {
    for (i64 pr = rlo[a]; pr <= rhi[a]; ++pr) {
      for (i64 m = 0; m < p.KH; ++m) {
        const i64 d = pr - Tap(m, p.KH, p.flip);
        if (d < 0 || d % p.sh != 0) continue;
        const i64 oh = d / p.sh;
        if (oh >= p.OH) continue;
        for (int b = 0; b < nc; ++b) {
          for (i64 pc = clo[b]; pc <= chi[b]; ++pc) {
            for (i64 q = 0; q < p.KW; ++q) {
              const i64 e = pc - Tap(q, p.KW, p.flip);
              if (e < 0 || e % p.sw != 0) continue;
              const i64 ow = e / p.sw;
              if (ow >= p.OW) continue;
              const T* dyp = dy + Offset(p.yl, n, oh, ow, 0);
              const T* wp = w + ((m * p.KW + q) * p.C + c) * p.F;
              for (i64 f = 0; f < p.F; ++f)
                acc += static_cast<Acc>(dyp[f * p.yl.sC]) * static_cast<Acc>(wp[f]);
            }
          }
        }
      }
    }
  }
  return acc;
}

// dw[m, q, c, f]; idx enumerates (m, q, c, f) with f fastest.
template <typename T, typename Acc>
KCE_HD Acc CorrBackpropFilterElem(const CorrParams& p, const T* x, const T* dy, i64 idx) {
  i64 m, q, c, f;
  Unflatten(idx, p.KW, p.C, p.F, &m, &q, &c, &f);
  Acc acc = Acc(0);
  for (i64 n = 0; n < p.N; ++n) {
    for (i64 oh = 0; oh < p.OH; ++oh) {
      const i64 r = MapCoord(oh * p.sh + Tap(m, p.KH, p.flip) - p.pt, p.H, p.mode);
      if (r < 0) continue;
      for (i64 ow = 0; ow < p.OW; ++ow) {
        const i64 s = MapCoord(ow * p.sw + Tap(q, p.KW, p.flip) - p.pl, p.W, p.mode);
        if (s < 0) continue;
        acc += static_cast<Acc>(x[Offset(p.xl, n, r, s, c)]) *
               static_cast<Acc>(dy[Offset(p.yl, n, oh, ow, f)]);
      }
    }
  }
  return acc;
}

struct PoolParams {
  i64 N, H, W, C;
  i64 KH, KW;
  i64 OH, OW;
  i64 sh, sw;
  i64 pt, pb, pl, pr;
  int mode;  // kZeros or kIgnore
  Layout xl, yl;
};

// Rows [r0, r1) of the window of output row o that lie inside the input; `full` tells whether the
// window is entirely inside (no padded cell).
KCE_HD void WindowRange(i64 o, i64 s, i64 before, i64 k, i64 size, i64* r0, i64* r1) {
  const i64 start = o * s - before;
  *r0 = start < 0 ? 0 : start;
  *r1 = start + k > size ? size : start + k;
}

// Divisor of the mean of window (oh, ow).
KCE_HD i64 PoolDivisor(const PoolParams& p, i64 oh, i64 ow) {
  if (p.mode != kIgnore) return p.KH * p.KW;
  i64 r0, r1, c0, c1;
  WindowRange(oh, p.sh, p.pt, p.KH, p.H, &r0, &r1);
  WindowRange(ow, p.sw, p.pl, p.KW, p.W, &c0, &c1);
  return (r1 - r0) * (c1 - c0);
}

// The winning cell of window (n, oh, ow, c): returns h * W + w of the input cell, or -1 when a
// padded zero wins. `best` receives the maximum.
template <typename T, typename Acc>
KCE_HD i64 MaxPoolArgmax(const PoolParams& p, const T* x, i64 n, i64 oh, i64 ow, i64 c, Acc* best) {
  const i64 h0 = oh * p.sh - p.pt, w0 = ow * p.sw - p.pl;
  i64 arg = -2;
  Acc b = Acc(0);
  for (i64 i = 0; i < p.KH; ++i) {
    const i64 h = h0 + i;
    const bool hin = h >= 0 && h < p.H;
    for (i64 j = 0; j < p.KW; ++j) {
      const i64 ww = w0 + j;
      Acc v;
      i64 cell;
      if (hin && ww >= 0 && ww < p.W) {
        v = static_cast<Acc>(x[Offset(p.xl, n, h, ww, c)]);
        cell = h * p.W + ww;
      } else if (p.mode == kZeros) {
        v = Acc(0);
        cell = -1;
      } else {
        continue;
      }
      if (arg == -2 || v > b || b != b) { b = v; arg = cell; }  // NaN never wins
    }
  }
  *best = b;
  return arg;
}

template <typename T, typename Acc>
KCE_HD Acc MeanPoolSum(const PoolParams& p, const T* x, i64 n, i64 oh, i64 ow, i64 c) {
  i64 r0, r1, c0, c1;
  WindowRange(oh, p.sh, p.pt, p.KH, p.H, &r0, &r1);
  WindowRange(ow, p.sw, p.pl, p.KW, p.W, &c0, &c1);
  Acc acc = Acc(0);
  for (i64 h = r0; h < r1; ++h)
    for (i64 w = c0; w < c1; ++w) acc += static_cast<Acc>(x[Offset(p.xl, n, h, w, c)]);
  return acc;
}

// Output rows whose window contains input row h: [o0, o1).
KCE_HD void CoveringOutputs(i64 h, i64 s, i64 before, i64 k, i64 out, i64* o0, i64* o1) {
  const i64 hp = h + before;  // padded coordinate
  i64 lo = hp - k + 1;
  lo = lo <= 0 ? 0 : (lo + s - 1) / s;
  i64 hi = hp / s + 1;
  if (hi > out) hi = out;
  *o0 = lo;
  *o1 = hi < lo ? lo : hi;
}

// Gather form of the max-pool gradient for input cell idx = (n, h, w, c), c fastest.
template <typename T, typename Acc>
KCE_HD Acc MaxPoolGradElem(const PoolParams& p, const T* x, const T* dy, i64 idx) {
  i64 n, h, w, c;
  Unflatten(idx, p.H, p.W, p.C, &n, &h, &w, &c);
  i64 oh0, oh1, ow0, ow1;
  CoveringOutputs(h, p.sh, p.pt, p.KH, p.OH, &oh0, &oh1);
  CoveringOutputs(w, p.sw, p.pl, p.KW, p.OW, &ow0, &ow1);
  const i64 me = h * p.W + w;
  Acc acc = Acc(0);
  for (i64 oh = oh0; oh < oh1; ++oh)
    for (i64 ow = ow0; ow < ow1; ++ow) {
      Acc best;
      if (MaxPoolArgmax<T, Acc>(p, x, n, oh, ow, c, &best) == me)
        acc += static_cast<Acc>(dy[Offset(p.yl, n, oh, ow, c)]);
    }
  return acc;
}

template <typename T, typename Acc>
KCE_HD Acc MeanPoolGradElem(const PoolParams& p, const T* dy, i64 idx) {
  i64 n, h, w, c;
  Unflatten(idx, p.H, p.W, p.C, &n, &h, &w, &c);
  i64 oh0, oh1, ow0, ow1;
  CoveringOutputs(h, p.sh, p.pt, p.KH, p.OH, &oh0, &oh1);
  CoveringOutputs(w, p.sw, p.pl, p.KW, p.OW, &ow0, &ow1);
  Acc acc = Acc(0);
  for (i64 oh = oh0; oh < oh1; ++oh)
    for (i64 ow = ow0; ow < ow1; ++ow)
      acc += static_cast<Acc>(dy[Offset(p.yl, n, oh, ow, c)]) /
             static_cast<Acc>(PoolDivisor(p, oh, ow));
  return acc;
}

// One output element of each op, stored at its place in the output's layout: the bodies of the CUDA
// kernels and of the CPU "direct" loops. Run(p, in0, in1, out, i) computes flat element i (channels
// fastest) of the op whose tensor inputs are in0, in1 (in1 unused by single-input ops); Total(p) is
// the number of output elements.
struct CorrForwardStore {  // in0 = x, in1 = w
  static KCE_HD i64 Total(const CorrParams& p) { return p.N * p.OH * p.OW * p.F; }
  template <typename T>
  static KCE_HD void Run(const CorrParams& p, const T* x, const T* w, T* y, i64 i) {
    i64 n, oh, ow, f;
    Unflatten(i, p.OH, p.OW, p.F, &n, &oh, &ow, &f);
    y[Offset(p.yl, n, oh, ow, f)] =
        static_cast<T>(CorrForwardElem<T, typename AccOf<T>::type>(p, x, w, i));
  }
};

struct CorrBackpropInputStore {  // in0 = w, in1 = dy
  static KCE_HD i64 Total(const CorrParams& p) { return p.N * p.H * p.W * p.C; }
  template <typename T>
  static KCE_HD void Run(const CorrParams& p, const T* w, const T* dy, T* dx, i64 i) {
    i64 n, h, ww, c;
    Unflatten(i, p.H, p.W, p.C, &n, &h, &ww, &c);
    dx[Offset(p.xl, n, h, ww, c)] =
        static_cast<T>(CorrBackpropInputElem<T, typename AccOf<T>::type>(p, w, dy, i));
  }
};

struct CorrBackpropFilterStore {  // in0 = x, in1 = dy
  static KCE_HD i64 Total(const CorrParams& p) { return p.KH * p.KW * p.C * p.F; }
  template <typename T>
  static KCE_HD void Run(const CorrParams& p, const T* x, const T* dy, T* dw, i64 i) {
    dw[i] = static_cast<T>(CorrBackpropFilterElem<T, typename AccOf<T>::type>(p, x, dy, i));
  }
};

struct MaxPoolForwardStore {  // in0 = x
  static KCE_HD i64 Total(const PoolParams& p) { return p.N * p.OH * p.OW * p.C; }
  template <typename T>
  static KCE_HD void Run(const PoolParams& p, const T* x, const T*, T* y, i64 i) {
    i64 n, oh, ow, c;
    Unflatten(i, p.OH, p.OW, p.C, &n, &oh, &ow, &c);
    typename AccOf<T>::type best;
    MaxPoolArgmax<T, typename AccOf<T>::type>(p, x, n, oh, ow, c, &best);
    y[Offset(p.yl, n, oh, ow, c)] = static_cast<T>(best);
  }
};

struct MaxPoolGradStore {  // in0 = x, in1 = dy
  static KCE_HD i64 Total(const PoolParams& p) { return p.N * p.H * p.W * p.C; }
  template <typename T>
  static KCE_HD void Run(const PoolParams& p, const T* x, const T* dy, T* dx, i64 i) {
    i64 n, h, w, c;
    Unflatten(i, p.H, p.W, p.C, &n, &h, &w, &c);
    dx[Offset(p.xl, n, h, w, c)] =
        static_cast<T>(MaxPoolGradElem<T, typename AccOf<T>::type>(p, x, dy, i));
  }
};

struct MeanPoolForwardStore {  // in0 = x
  static KCE_HD i64 Total(const PoolParams& p) { return p.N * p.OH * p.OW * p.C; }
  template <typename T>
  static KCE_HD void Run(const PoolParams& p, const T* x, const T*, T* y, i64 i) {
    typedef typename AccOf<T>::type A;
    i64 n, oh, ow, c;
    Unflatten(i, p.OH, p.OW, p.C, &n, &oh, &ow, &c);
    y[Offset(p.yl, n, oh, ow, c)] = static_cast<T>(MeanPoolSum<T, A>(p, x, n, oh, ow, c) /
                                                   static_cast<A>(PoolDivisor(p, oh, ow)));
  }
};

struct MeanPoolGradStore {  // in0 = dy
  static KCE_HD i64 Total(const PoolParams& p) { return p.N * p.H * p.W * p.C; }
  template <typename T>
  static KCE_HD void Run(const PoolParams& p, const T* dy, const T*, T* dx, i64 i) {
    i64 n, h, w, c;
    Unflatten(i, p.H, p.W, p.C, &n, &h, &w, &c);
    dx[Offset(p.xl, n, h, w, c)] =
        static_cast<T>(MeanPoolGradElem<T, typename AccOf<T>::type>(p, dy, i));
  }
};

}  // namespace kce

#endif  // KERAS_CNN_EXT_CUSTOM_OPS_KCE_FUNCTORS_H_
