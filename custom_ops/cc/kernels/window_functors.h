// Host+device basics shared by every op family: element type helpers, the (n, h, w, c) element
// strides of a 4-D tensor in either layout, and the padding map. Included by the CPU kernels and by
// the plain-CUDA kernels (*.cu.cc), so nothing here includes a TensorFlow header.
//
// Padding convention (README "Semantics"): a padded coordinate i of an axis of size `size` with
// `before` cells of padding refers to the source cell i - before; MapCoord turns that unpadded
// coordinate into the source index (-1: a zero cell) for the padding modes zeros, replicate (numpy
// 'edge') and reflect (numpy 'reflect': one reflection that excludes the edge; needs
// before, after < size).
#ifndef KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_WINDOW_FUNCTORS_H_
#define KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_WINDOW_FUNCTORS_H_

#include <cstdint>

#if defined(__CUDACC__)
#define KCE_HD __host__ __device__ __forceinline__
#else
#define KCE_HD inline
#endif

namespace kce {

typedef int64_t i64;

enum PadMode : int { kZeros = 0, kReplicate = 1, kReflect = 2, kIgnore = 3 };

// Element strides of a 4-D tensor addressed logically as (n, h, w, c). Device code cannot use
// TensorFlow's tensor_format.h, so the two layouts are spelled out here once.
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

// Accumulation type of element type T (float for half / bfloat16 / float).
template <typename T> struct AccOf { typedef float type; };
template <> struct AccOf<double> { typedef double type; };

template <typename T> using AccT = typename AccOf<T>::type;

// Splits a flat index over (n, a, b, c) with c fastest.
KCE_HD void Unflatten(i64 i, i64 A, i64 B, i64 C, i64* n, i64* a, i64* b, i64* c) {
  *c = i % C; i /= C;
  *b = i % B; i /= B;
  *a = i % A;
  *n = i / A;
}

// Stores value v of flat element i of a 4-D output enumerated (n, a, b, c), c fastest, at its place
// in layout l: the last step of every per-element store functor.
template <typename T, typename Acc>
KCE_HD void StoreAt(T* out, const Layout& l, i64 A, i64 B, i64 C, i64 i, Acc v) {
  i64 n, a, b, c;
  Unflatten(i, A, B, C, &n, &a, &b, &c);
  out[Offset(l, n, a, b, c)] = static_cast<T>(v);
}

}  // namespace kce

#endif  // KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_WINDOW_FUNCTORS_H_
