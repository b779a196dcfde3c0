// CPU-side helpers shared by the fast pooling kernels (max_pool2d_op.cc, mean_pool2d_op.cc).
#ifndef KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_POOL2D_CPU_H_
#define KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_POOL2D_CPU_H_

#include <cstring>
#include <type_traits>
#include <vector>
#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "kernels/cpu_util.h"
#include "kernels/pool2d_functors.h"

namespace kce {

// The fast pooling algorithms run the channel axis innermost: channels_last only (channels_first
// takes the per-element functors, see CpuOp). Both layouts: a channels_first input of one cell
// has sC == 1 too, but its output (ceil_mode can give a 1x1 input 2 columns) would not.
struct ChannelsLastFast {
  static bool Supports(const PoolParams& p) { return p.xl.sC == 1 && p.yl.sC == 1; }
};

// A channel count known at compile time.
template <int K>
using Width = std::integral_constant<int, K>;

// Covers the channel axis [0, C) with pieces of K channels, K the widest of 16 (8 for double: at
// most 64 bytes), 8 and 4 that fits, else C itself: fn(Width<K>()) runs the kernel for that width
// and ForPieces its loop over the pieces. With K a constant the per-channel work becomes whole
// vectors (Piece) without a remainder loop: a loop over a runtime C of 6 ran only the scalar
// remainder of a 16-wide loop, with a mispredicted branch per channel and cell.
// A piece is at most one vector register of the build's target: 64 bytes with AVX-512, else 32
// (AVX2). A 64-byte GCC vector on an AVX2 build is split by the compiler into register pairs
// and goes through memory wherever it crosses a call; measured on an AVX2 EPYC (2 cores), max
// pooling (16, 28, 28, 64) 2x2 single-threaded ran ~4x slower than TensorFlow's kernel so.
#if defined(__AVX512F__)
constexpr int kPieceBytes = 64;
#else
constexpr int kPieceBytes = 32;
#endif

template <typename A, typename Fn>
void WithPieceWidth(i64 C, Fn&& fn) {
  if (C >= 16 && 16 * sizeof(A) <= kPieceBytes) return fn(Width<16>());
  if (C >= 8 && 8 * sizeof(A) <= kPieceBytes) return fn(Width<8>());
  if (C >= 4) return fn(Width<4>());
  if (C == 3) return fn(Width<3>());
  if (C == 2) return fn(Width<2>());
  fn(Width<1>());
}

// Calls fn(c0, s) for the pieces [c0, c0 + K) at s = 0, K, 2K, ..., the last one moved back to
// end at C, so that its first s - c0 channels repeat the previous piece's: they compute the same
// values again (C = 6: [0, 4), [2, 6)), harmless where they are stored, skipped where they are
// added. No load or store leaves the cell.
template <int K, typename Fn>
inline void ForPieces(i64 C, Fn&& fn) {
  for (i64 s = 0; s < C; s += K) fn(s + K <= C ? s : C - K, s);
}

// The pieces in groups of up to G: fn(n, c0, s) with the n pieces of the group in c0[q], s[q]
// (as ForPieces). A kernel that loads the group's cells before it works on them keeps several
// loads in flight, which counts where the input comes from memory (64 channels and more).
template <int K, int G, typename Fn>
inline void ForPieceGroups(i64 C, Fn&& fn) {
  for (i64 s0 = 0; s0 < C; s0 += G * K) {
    i64 c0[G], s[G];
    int n = 0;
    for (; n < G && s0 + n * K < C; ++n) {
      s[n] = s0 + n * K;
      c0[n] = s[n] + K <= C ? s[n] : C - K;
    }
    fn(n, c0, s);
  }
}

template <typename A> struct SameWidthInt { typedef int32_t type; };
template <> struct SameWidthInt<double> { typedef int64_t type; };

// The K channels of a piece as one GCC vector of P lanes in the accumulation type A (P: the power
// of two >= K, at least 4; the lanes past K are 0), so that a window's running state stays in
// registers and its selects are masked moves; GCC lowers the vectors to what the target has (SSE,
// AVX2, AVX-512). (A loop over K channels does not do that: GCC unrolls a loop of constant length
// into scalar code with a mispredicted branch per select, or keeps the state in memory.) Half
// converts a vector at a time where the build targets F16C (lane by lane, the conversions of a
// mean pool cost more than its arithmetic); bfloat16 and narrow pieces go lane by lane.
template <int K, typename T>
struct Piece {
  typedef AccT<T> A;
  typedef typename SameWidthInt<A>::type I;
  static constexpr int P = K > 8 ? 16 : K > 4 ? 8 : 4;
  typedef A V __attribute__((vector_size(P * sizeof(A))));
  typedef I M __attribute__((vector_size(P * sizeof(A))));  // a mask, or an index per lane
  typedef A Unaligned __attribute__((vector_size(P * sizeof(A)), aligned(alignof(A))));
  static constexpr bool kWhole = K == P;  // else lane by lane (unrolled into lane inserts)

  template <typename U>
  static V Load(const U* src) {
    V v = {};
    if constexpr (kWhole && std::is_same<U, A>::value) {
      std::memcpy(&v, src, sizeof(v));
#if defined(__F16C__)
    } else if constexpr (kWhole && std::is_same<U, Eigen::half>::value) {
      for (int i = 0; i < P; i += 4) {
        const __m128 f = _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + i)));
        std::memcpy(reinterpret_cast<A*>(&v) + i, &f, sizeof(f));
      }
#endif
    } else {
      for (int c = 0; c < K; ++c) v[c] = static_cast<A>(src[c]);
    }
    return v;
  }
  template <typename U>
  static void Store(V v, U* dst) {
    if constexpr (kWhole && std::is_same<U, A>::value) {
      // A typed store: memcpy's could alias anything (the kernel's sizes would be reloaded).
      *reinterpret_cast<Unaligned*>(dst) = v;
#if defined(__F16C__)
    } else if constexpr (kWhole && std::is_same<U, Eigen::half>::value) {
      for (int i = 0; i < P; i += 4) {  // rounded to nearest even, as Eigen::half(float)
        __m128 f;
        std::memcpy(&f, reinterpret_cast<const A*>(&v) + i, sizeof(f));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + i), _mm_cvtps_ph(f, 0));
      }
#endif
    } else {
      for (int c = 0; c < K; ++c) dst[c] = static_cast<U>(v[c]);
    }
  }
};

// The input cells [r0, r1) x [q0, q1) of the window with top-left corner (h0, w0) (unpadded
// coordinates, possibly outside the input).
struct WindowCells {
  i64 h0, w0, r0, r1, q0, q1;
  WindowCells(const PoolParams& p, i64 oh, i64 ow)
      : h0(oh * p.sh - p.pt), w0(ow * p.sw - p.pl) {
    r0 = h0 < 0 ? 0 : h0;
    r1 = h0 + p.KH > p.H ? p.H : h0 + p.KH;
    q0 = w0 < 0 ? 0 : w0;
    q1 = w0 + p.KW > p.W ? p.W : w0 + p.KW;
  }
};

// Calls fn(n, oh, ow, r0, r1, c0, c1, divisor) for every window of output rows [b, e) of the
// flattened (n, oh) range: the cells [r0, r1) x [c0, c1) of the window that lie in the input, and
// the mean's divisor.
template <typename A, typename Fn>
void ForEachWindow(const PoolParams& p, i64 b, i64 e, Fn&& fn) {
  for (i64 u = b; u < e; ++u) {
    const i64 n = u / p.OH, oh = u % p.OH;
    i64 r0, r1;
    WindowRange(oh, p.sh, p.pt, p.KH, p.H, &r0, &r1);
    for (i64 ow = 0; ow < p.OW; ++ow) {
      i64 c0, c1;
      WindowRange(ow, p.sw, p.pl, p.KW, p.W, &c0, &c1);
      fn(n, oh, ow, r0, r1, c0, c1, static_cast<A>(PoolDivisor(p, oh, ow)));
    }
  }
}

// The gradient for overlapping windows, whose contributions to a cell of dx must be summed: one
// image per task (no two tasks write the same cell), summed in the accumulation type A — in place
// in dx when that is the element type, else in a per-task buffer rounded into dx at the end.
// add(n, acc) adds every window's contribution to image n's dx `acc` (H x W x C, zeroed before).
template <typename T, typename AddFn>
void ScatterImages(tensorflow::OpKernelContext* ctx, const PoolParams& p, i64 cost, T* dxp,
                   AddFn&& add) {
  typedef AccT<T> A;
  constexpr bool kInPlace = std::is_same<T, A>::value;
  const i64 size = p.H * p.W * p.C;
  ParFor(ctx, p.N, cost, [&](i64 b, i64 e) {
    std::vector<A> buf(kInPlace ? 0 : size);
    for (i64 n = b; n < e; ++n) {
      T* out = dxp + n * size;
      A* acc;
      if constexpr (kInPlace) acc = out; else acc = buf.data();
      std::fill(acc, acc + size, A(0));
      add(n, acc);
      if constexpr (!kInPlace)
        for (i64 i = 0; i < size; ++i) out[i] = static_cast<T>(acc[i]);
    }
  });
}

// The fast gradient of a pooling op, given Impl::WriteDisjoint (non-overlapping windows: each
// writes its own cells of dx) and Impl::ScatterOverlapping (ScatterImages).
template <typename Impl>
struct PoolGradFast : ChannelsLastFast {
  template <typename T>
  static void Run(tensorflow::OpKernelContext* ctx, const PoolParams& p, const T* in0,
                  const T* in1, T* dxp) {
    if (!Disjoint(p)) return Impl::ScatterOverlapping(ctx, p, in0, in1, dxp);
    if (!Covers(p)) SetZero(ctx, dxp, p.N * p.H * p.W * p.C);  // cells outside every window
    Impl::WriteDisjoint(ctx, p, in0, in1, dxp);
  }
};

}  // namespace kce

#endif  // KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_POOL2D_CPU_H_
