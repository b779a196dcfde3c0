// Per-element math of the correlation ops (Corr2D and its two gradients), shared by the CPU
// "direct" path (corr2d_op.cc) and the CUDA kernels (corr2d_op_gpu.cu.cc). No TensorFlow header.
//
// Kernel tap m of a window starting at padded row o*s reads padded row o*s + Tap(m) * d, with
// Tap(m) = m for cross-correlation and KH-1-m for the mathematical convolution (flipped kernel) and
// d the dilation (PyTorch's: taps d cells apart, effective extent d*(KH-1)+1).
//
// Groups (PyTorch's): the C input channels and F filters split into G groups; output channel f
// belongs to group g = f / Fg (Fg = F / G) and reads input channels [g*Cg, (g+1)*Cg) (Cg = C / G);
// the kernel has shape (KH, KW, Cg, F), element (m, q, c', f) at ((m*KW + q)*Cg + c')*F + f.
#ifndef KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_CORR2D_FUNCTORS_H_
#define KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_CORR2D_FUNCTORS_H_

#include "kernels/window_functors.h"

namespace kce {

KCE_HD i64 Tap(i64 m, i64 k, bool flip) { return flip ? k - 1 - m : m; }

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

struct CorrParams {
  i64 N, H, W, C;     // input
  i64 KH, KW, F;      // kernel (KH, KW, Cg, F)
  i64 dh, dw;         // dilations
  i64 G, Cg, Fg;      // groups, input channels and filters per group
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
  const i64 c0 = (f / p.Fg) * p.Cg;
  Acc acc = Acc(0);
  for (i64 m = 0; m < p.KH; ++m) {
    const i64 r = MapCoord(oh * p.sh + Tap(m, p.KH, p.flip) * p.dh - p.pt, p.H, p.mode);
    if (r < 0) continue;
    for (i64 q = 0; q < p.KW; ++q) {
      const i64 s = MapCoord(ow * p.sw + Tap(q, p.KW, p.flip) * p.dw - p.pl, p.W, p.mode);
      if (s < 0) continue;
      const T* xp = x + Offset(p.xl, n, r, s, c0);
      const T* wp = w + (m * p.KW + q) * p.Cg * p.F + f;
      for (i64 c = 0; c < p.Cg; ++c)
        acc += static_cast<Acc>(xp[c * p.xl.sC]) * static_cast<Acc>(wp[c * p.F]);
    }
  }
  return acc;
}

// Output coordinate whose kernel tap `tap` reads padded coordinate `padded`, or -1 for none.
KCE_HD i64 TapOutput(i64 padded, i64 tap, i64 s, i64 out) {
  const i64 d = padded - tap;
  if (d < 0 || d % s != 0) return -1;
  return d / s < out ? d / s : -1;
}

// dx[n, h, w, c] (gather form); idx enumerates (n, h, w, c) with c fastest.
template <typename T, typename Acc>
KCE_HD Acc CorrBackpropInputElem(const CorrParams& p, const T* w, const T* dy, i64 idx) {
  i64 n, xh, xw, c;
  Unflatten(idx, p.H, p.W, p.C, &n, &xh, &xw, &c);
  const i64 g = c / p.Cg, cg = c - g * p.Cg, f0 = g * p.Fg;
  i64 rlo[3], rhi[3], clo[3], chi[3];
  const int nr = PadSources(xh, p.H, p.pt, p.pb, p.mode, rlo, rhi);
  const int nc = PadSources(xw, p.W, p.pl, p.pr, p.mode, clo, chi);
  Acc acc = Acc(0);
  for (int a = 0; a < nr; ++a)
    for (i64 pr = rlo[a]; pr <= rhi[a]; ++pr)
      for (i64 m = 0; m < p.KH; ++m) {
        const i64 oh = TapOutput(pr, Tap(m, p.KH, p.flip) * p.dh, p.sh, p.OH);
        if (oh < 0) continue;
        for (int b = 0; b < nc; ++b)
          for (i64 pc = clo[b]; pc <= chi[b]; ++pc)
            for (i64 q = 0; q < p.KW; ++q) {
              const i64 ow = TapOutput(pc, Tap(q, p.KW, p.flip) * p.dw, p.sw, p.OW);
              if (ow < 0) continue;
              const T* dyp = dy + Offset(p.yl, n, oh, ow, f0);
              const T* wp = w + ((m * p.KW + q) * p.Cg + cg) * p.F + f0;
              for (i64 f = 0; f < p.Fg; ++f)
                acc += static_cast<Acc>(dyp[f * p.yl.sC]) * static_cast<Acc>(wp[f]);
            }
      }
  return acc;
}

// dw[m, q, c', f]; idx enumerates (m, q, c', f) with f fastest; c' is channel (f / Fg)*Cg + c'
// of the input.
template <typename T, typename Acc>
KCE_HD Acc CorrBackpropFilterElem(const CorrParams& p, const T* x, const T* dy, i64 idx) {
  i64 m, q, c, f;
  Unflatten(idx, p.KW, p.Cg, p.F, &m, &q, &c, &f);
  c += (f / p.Fg) * p.Cg;
  Acc acc = Acc(0);
  for (i64 n = 0; n < p.N; ++n) {
    for (i64 oh = 0; oh < p.OH; ++oh) {
      const i64 r = MapCoord(oh * p.sh + Tap(m, p.KH, p.flip) * p.dh - p.pt, p.H, p.mode);
      if (r < 0) continue;
      for (i64 ow = 0; ow < p.OW; ++ow) {
        const i64 s = MapCoord(ow * p.sw + Tap(q, p.KW, p.flip) * p.dw - p.pl, p.W, p.mode);
        if (s < 0) continue;
        acc += static_cast<Acc>(x[Offset(p.xl, n, r, s, c)]) *
               static_cast<Acc>(dy[Offset(p.yl, n, oh, ow, f)]);
      }
    }
  }
  return acc;
}

// One output element of each op, stored at its place in the output's layout: the bodies of the CUDA
// kernels and of the CPU "direct" loops. Run(p, in0, in1, out, i) computes flat element i (channels
// fastest) of the op whose tensor inputs are in0, in1; Total(p) is the number of output elements,
// Cost(p) the work of one (the thread pool's cost estimate).
struct CorrForwardStore {  // in0 = x, in1 = w
  static KCE_HD i64 Total(const CorrParams& p) { return p.N * p.OH * p.OW * p.F; }
  static KCE_HD i64 Cost(const CorrParams& p) { return p.KH * p.KW * p.Cg * 2; }
  template <typename T>
  static KCE_HD void Run(const CorrParams& p, const T* x, const T* w, T* y, i64 i) {
    StoreAt(y, p.yl, p.OH, p.OW, p.F, i, CorrForwardElem<T, AccT<T>>(p, x, w, i));
  }
};

struct CorrBackpropInputStore {  // in0 = w, in1 = dy
  static KCE_HD i64 Total(const CorrParams& p) { return p.N * p.H * p.W * p.C; }
  static KCE_HD i64 Cost(const CorrParams& p) { return p.KH * p.KW * p.Fg * 2; }
  template <typename T>
  static KCE_HD void Run(const CorrParams& p, const T* w, const T* dy, T* dx, i64 i) {
    StoreAt(dx, p.xl, p.H, p.W, p.C, i, CorrBackpropInputElem<T, AccT<T>>(p, w, dy, i));
  }
};

struct CorrBackpropFilterStore {  // in0 = x, in1 = dy; dw is (KH, KW, Cg, F), row-major
  static KCE_HD i64 Total(const CorrParams& p) { return p.KH * p.KW * p.Cg * p.F; }
  static KCE_HD i64 Cost(const CorrParams& p) { return p.N * p.OH * p.OW * 2; }
  template <typename T>
  static KCE_HD void Run(const CorrParams& p, const T* x, const T* dy, T* dw, i64 i) {
    dw[i] = static_cast<T>(CorrBackpropFilterElem<T, AccT<T>>(p, x, dy, i));
  }
};

}  // namespace kce

#endif  // KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_CORR2D_FUNCTORS_H_
