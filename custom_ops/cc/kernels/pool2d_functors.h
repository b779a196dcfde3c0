// Per-element math of the pooling ops (MaxPool2D, MeanPool2D and their gradients), shared by the
// CPU kernels (max_pool2d_op.cc, mean_pool2d_op.cc) and the CUDA kernels (pool2d_op_gpu.cu.cc).
// No TensorFlow header.
//
// Max-pooling order (README "Semantics"): cells are visited in row-major window order; padded
// cells hold 0 and take part in "zeros" mode (a padded winner passes no gradient) and are skipped
// in "ignore" mode. NaN ranks above every number, as in NumPy and PyTorch, so a window containing
// NaN gives NaN; among equal cells (ties, or several NaN) the first one keeps the win and receives
// the gradient. MaxBeats is that order, the single comparison every max-pool path uses.
#ifndef KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_POOL2D_FUNCTORS_H_
#define KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_POOL2D_FUNCTORS_H_

#include "kernels/window_functors.h"

namespace kce {

// Whether a cell of value v, visited after the current winner of value b, takes the win: a NaN
// winner keeps it (b == b fails); otherwise NaN or a strictly larger number wins, which is exactly
// "not v <= b" (IEEE: a comparison with NaN is false). Two compares and an and, branch-free, so the
// CPU loops that call it per channel vectorize into compares and blends.
template <typename A>
KCE_HD auto MaxBeats(A v, A b) -> decltype(!(v <= b) && b == b) {  // bool; a mask for GCC vectors
  return !(v <= b) && b == b;
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

// Rows [r0, r1) of the window of output row o that lie inside the input.
KCE_HD void WindowRange(i64 o, i64 s, i64 before, i64 k, i64 size, i64* r0, i64* r1) {
  const i64 start = o * s - before;
  *r0 = start < 0 ? 0 : start;
  *r1 = start + k > size ? size : start + k;
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

// How many windows cover an input cell at most.
KCE_HD i64 Cover(const PoolParams& p) {
  return ((p.KH + p.sh - 1) / p.sh) * ((p.KW + p.sw - 1) / p.sw);
}

// Whether the windows never overlap (each input cell belongs to at most one window).
KCE_HD bool Disjoint(const PoolParams& p) { return p.sh >= p.KH && p.sw >= p.KW; }

// Whether every input cell belongs to some window (so a disjoint backward pass writes all of dx).
KCE_HD bool Covers(const PoolParams& p) {
  return p.sh == p.KH && p.sw == p.KW && (p.OH - 1) * p.sh - p.pt + p.KH >= p.H &&
         (p.OW - 1) * p.sw - p.pl + p.KW >= p.W;
}

// Whether unpadded cell (h, w) lies in the padded input: ceil_mode's last windows reach past it,
// and those cells take no part (never win a max, are not counted by a mean). Without ceil_mode
// every window lies inside, and this is always true.
KCE_HD bool InPadded(const PoolParams& p, i64 h, i64 w) { return h < p.H + p.pb && w < p.W + p.pr; }

// Window cells along one axis from `start` (unpadded) that lie in the padded input of `size` +
// `after` cells: k except in ceil_mode's last windows.
KCE_HD i64 PaddedSpan(i64 start, i64 k, i64 size, i64 after) {
  return start + k > size + after ? size + after - start : k;
}

// Divisor of the mean of window (oh, ow): "zeros" counts the padded cells (PyTorch's
// count_include_pad=True, which leaves out ceil_mode's cells beyond the padded input), "ignore"
// the input cells.
KCE_HD i64 PoolDivisor(const PoolParams& p, i64 oh, i64 ow) {
  if (p.mode != kIgnore)
    return PaddedSpan(oh * p.sh - p.pt, p.KH, p.H, p.pb) *
           PaddedSpan(ow * p.sw - p.pl, p.KW, p.W, p.pr);
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
      } else if (p.mode == kZeros && InPadded(p, h, ww)) {
        v = Acc(0);
        cell = -1;
      } else {
        continue;
      }
      if (arg == -2 || MaxBeats(v, b)) { b = v; arg = cell; }
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

// One output element of each op at its place in the output's layout (see corr2d_functors.h).
struct MaxPoolForwardStore {  // in0 = x
  static KCE_HD i64 Total(const PoolParams& p) { return p.N * p.OH * p.OW * p.C; }
  static KCE_HD i64 Cost(const PoolParams& p) { return p.KH * p.KW * 3; }
  template <typename T>
  static KCE_HD void Run(const PoolParams& p, const T* x, const T*, T* y, i64 i) {
    i64 n, oh, ow, c;
    Unflatten(i, p.OH, p.OW, p.C, &n, &oh, &ow, &c);
    AccT<T> best;
    MaxPoolArgmax<T, AccT<T>>(p, x, n, oh, ow, c, &best);
    StoreAt(y, p.yl, p.OH, p.OW, p.C, i, best);
  }
};

struct MaxPoolGradStore {  // in0 = x, in1 = dy
  static KCE_HD i64 Total(const PoolParams& p) { return p.N * p.H * p.W * p.C; }
  static KCE_HD i64 Cost(const PoolParams& p) { return Cover(p) * p.KH * p.KW * 3; }
  template <typename T>
  static KCE_HD void Run(const PoolParams& p, const T* x, const T* dy, T* dx, i64 i) {
    StoreAt(dx, p.xl, p.H, p.W, p.C, i, MaxPoolGradElem<T, AccT<T>>(p, x, dy, i));
  }
};

struct MeanPoolForwardStore {  // in0 = x
  static KCE_HD i64 Total(const PoolParams& p) { return p.N * p.OH * p.OW * p.C; }
  static KCE_HD i64 Cost(const PoolParams& p) { return p.KH * p.KW * 2; }
  template <typename T>
  static KCE_HD void Run(const PoolParams& p, const T* x, const T*, T* y, i64 i) {
    i64 n, oh, ow, c;
    Unflatten(i, p.OH, p.OW, p.C, &n, &oh, &ow, &c);
    const AccT<T> sum = MeanPoolSum<T, AccT<T>>(p, x, n, oh, ow, c);
    StoreAt(y, p.yl, p.OH, p.OW, p.C, i, sum / static_cast<AccT<T>>(PoolDivisor(p, oh, ow)));
  }
};

struct MeanPoolGradStore {  // in0 = dy
  static KCE_HD i64 Total(const PoolParams& p) { return p.N * p.H * p.W * p.C; }
  static KCE_HD i64 Cost(const PoolParams& p) { return Cover(p) * 4; }
  template <typename T>
  static KCE_HD void Run(const PoolParams& p, const T* dy, const T*, T* dx, i64 i) {
    StoreAt(dx, p.xl, p.H, p.W, p.C, i, MeanPoolGradElem<T, AccT<T>>(p, dy, i));
  }
};

}  // namespace kce

#endif  // KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_POOL2D_FUNCTORS_H_
