// CPU kernels of keras_cnn_ext's custom ops.
//
// Two algorithms per op, both multi-threaded with TensorFlow's intra-op thread pool:
//   * "fast" (default): correlation = blocked im2col into a cache-sized buffer + Eigen GEMM
//     (col2im scatter for the input gradient, per-thread partial sums for the kernel gradient);
//     channels_last pooling = fused pad+pool with the channel axis innermost (no padded copy).
//   * "direct": one output element at a time through the per-element functors of kce_functors.h —
//     exactly the code the CUDA kernels run. Selected with the environment variable
//     KERAS_CNN_EXT_NATIVE_CPU_ALGO=direct (the tests use it to check the GPU arithmetic on CPU);
//     channels_first pooling always uses it.
#define EIGEN_USE_THREADS

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "Eigen/Core"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor.h"
#include "kce_common.h"

namespace kce {
namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;

template <typename A> struct SameWidthInt { typedef int32_t type; };
template <> struct SameWidthInt<double> { typedef int64_t type; };

// Forward products with fewer filters than this go through a column-major block (see Corr2DOp).
// (Measured: no gain above 32 filters, a 2.5x faster forward for LeNet's 6 filters.)
constexpr i64 kColMajorBelow = 32;

bool UseDirect() {
  const char* v = std::getenv("KERAS_CNN_EXT_NATIVE_CPU_ALGO");
  return v != nullptr && std::strcmp(v, "direct") == 0;
}

template <typename Fn>
void ParFor(OpKernelContext* ctx, i64 total, i64 cost, Fn&& fn) {
  if (total <= 0) return;
  auto* workers = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  workers->ParallelFor(total, std::max<i64>(cost, 1), [&fn](int64_t b, int64_t e) { fn(b, e); });
}

int NumThreads(OpKernelContext* ctx) {
  return std::max(1, ctx->device()->tensorflow_cpu_worker_threads()->num_threads);
}

// The "direct" algorithm: Op::Run (kce_functors.h, the CUDA kernels' body) per output element.
template <typename Op, typename T, typename P>
void DirectLoop(OpKernelContext* ctx, const P& p, i64 cost, const T* in0, const T* in1, T* out) {
  ParFor(ctx, Op::Total(p), cost, [&](i64 b, i64 e) {
    for (i64 i = b; i < e; ++i) Op::template Run<T>(p, in0, in1, out, i);
  });
}

template <OpKind Kind>
using CpuKernel = WindowKernel<Kind, true>;

template <typename T>
void SetZero(OpKernelContext* ctx, T* p, i64 n) {
  ParFor(ctx, n, 1, [&](i64 b, i64 e) { std::fill(p + b, p + e, T(0)); });
}

template <typename A>
using RowMat = Eigen::Matrix<A, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename A>
using ColMat = Eigen::Matrix<A, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;

// ============================== correlation ==============================

// Rows of the im2col buffer per block: `budget` elements (the kernel gradient wants deep blocks,
// since the block's rows are the inner dimension of its GEMM).
i64 BlockRows(i64 K, i64 P, i64 budget = i64{1} << 18) {
  const i64 r = std::max<i64>(16, budget / std::max<i64>(K, 1));
  return std::max<i64>(1, std::min(r, P));
}

// Source-index tables of the im2col / col2im loops, computed once per op call with the shared
// functors (MapCoord, Tap): htab[oh * KH + m] is the source row of tap m of output row oh (-1: a
// zero cell), wtab[ow * KW + q] likewise for columns; wrun[ow] tells whether the KW source columns of
// output column ow are consecutive (then a window row is one contiguous run of KW * C values in
// channels_last layout).
struct CorrTables {
  std::vector<i64> htab, wtab;
  std::vector<char> wrun;
  explicit CorrTables(const CorrParams& p)
      : htab(p.OH * p.KH), wtab(p.OW * p.KW), wrun(p.OW) {
    for (i64 oh = 0; oh < p.OH; ++oh)
      for (i64 m = 0; m < p.KH; ++m)
        htab[oh * p.KH + m] = MapCoord(oh * p.sh + Tap(m, p.KH, p.flip) - p.pt, p.H, p.mode);
    for (i64 ow = 0; ow < p.OW; ++ow) {
      bool run = true;
      for (i64 q = 0; q < p.KW; ++q) {
        const i64 v = MapCoord(ow * p.sw + Tap(q, p.KW, p.flip) - p.pl, p.W, p.mode);
        wtab[ow * p.KW + q] = v;
        if (v < 0 || (q > 0 && v != wtab[ow * p.KW] + q)) run = false;
      }
      wrun[ow] = run;
    }
  }
};

// Fills rows [p0, p0 + rows) of image n's im2col matrix (row = output pixel, column = (m, q, c)).
template <typename T, typename A>
void Im2Col(const CorrParams& p, const CorrTables& tab, const T* x, i64 n, i64 p0, i64 rows,
            A* __restrict buf) {
  const i64 K = p.KH * p.KW * p.C, C = p.C, KWC = p.KW * p.C;
  const bool cl = p.xl.sC == 1;
  for (i64 r = 0; r < rows; ++r) {
    const i64 pix = p0 + r, oh = pix / p.OW, ow = pix % p.OW;
    const i64* hrow = tab.htab.data() + oh * p.KH;
    const i64* wcol = tab.wtab.data() + ow * p.KW;
    const bool run = cl && tab.wrun[ow];
    A* dst = buf + r * K;
    for (i64 m = 0; m < p.KH; ++m, dst += KWC) {
      const i64 hh = hrow[m];
      if (hh < 0) {
        std::fill(dst, dst + KWC, A(0));
        continue;
      }
      const T* base = x + n * p.xl.sN + hh * p.xl.sH;
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
          const T* __restrict src = base + ww * C;
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
// (acc: H * W * C, channels last); padded cells fold onto their source cell.
template <typename A>
void Col2Im(const CorrParams& p, const CorrTables& tab, const A* cols, i64 p0, i64 rows,
            A* __restrict acc) {
  const i64 K = p.KH * p.KW * p.C, C = p.C, KWC = p.KW * p.C;
  for (i64 r = 0; r < rows; ++r) {
    const i64 pix = p0 + r, oh = pix / p.OW, ow = pix % p.OW;
    const i64* hrow = tab.htab.data() + oh * p.KH;
    const i64* wcol = tab.wtab.data() + ow * p.KW;
    const bool run = tab.wrun[ow];
    const A* src = cols + r * K;
    for (i64 m = 0; m < p.KH; ++m, src += KWC) {
      const i64 hh = hrow[m];
      if (hh < 0) continue;
      A* base = acc + hh * p.W * C;
      if (run) {
        A* __restrict d = base + wcol[0] * C;
        const A* __restrict s = src;
        for (i64 i = 0; i < KWC; ++i) d[i] += s[i];
        continue;
      }
      for (i64 q = 0; q < p.KW; ++q) {
        const i64 ww = wcol[q];
        if (ww < 0) continue;
        A* __restrict d = base + ww * C;
        const A* __restrict s = src + q * C;
        for (i64 c = 0; c < C; ++c) d[c] += s[c];
      }
    }
  }
}

// "Tap-major" (column-major, buf[k * rows + r]) variants for channels_last inputs with few
// channels (LeNet's C = 1, RGB's C = 3): a row-major im2col row would be a string of KH runs of only
// KW * C values, while a tap-major column is a run over a whole output row.
bool UseTapMajor(const CorrParams& p) { return p.xl.sC == 1 && p.C <= 4; }

template <typename T, typename A>
void Im2ColTapMajor(const CorrParams& p, const CorrTables& tab, const T* x, i64 n, i64 p0,
                    i64 rows, A* __restrict buf) {
  const i64 C = p.C;
  const T* xn = x + n * p.xl.sN;
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
            d[j] = ww < 0 ? A(0) : static_cast<A>(src[ww * C]);
          }
        }
      }
    }
    r0 += len;
  }
}

template <typename A>
void Col2ImTapMajor(const CorrParams& p, const CorrTables& tab, const A* cols, i64 p0, i64 rows,
                    A* acc) {
  const i64 C = p.C;
  for (i64 r0 = 0; r0 < rows;) {
    const i64 pix = p0 + r0, oh = pix / p.OW, ow0 = pix % p.OW;
    const i64 len = std::min(rows - r0, p.OW - ow0);
    for (i64 m = 0; m < p.KH; ++m) {
      const i64 hh = tab.htab[oh * p.KH + m];
      if (hh < 0) continue;
      A* base = acc + hh * p.W * C;
      for (i64 q = 0; q < p.KW; ++q) {
        const i64* wc = tab.wtab.data() + ow0 * p.KW + q;
        for (i64 c = 0; c < C; ++c) {
          const A* s = cols + ((m * p.KW + q) * C + c) * rows + r0;
          for (i64 j = 0; j < len; ++j) {
            const i64 ww = wc[j * p.KW];
            if (ww >= 0) base[ww * C + c] += s[j];
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

template <typename T>
class Corr2DOp : public CpuKernel<kCorrForward> {
 public:
  using WindowKernel::WindowKernel;
  void Compute(OpKernelContext* ctx) override {
    typedef typename AccOf<T>::type A;
    CorrParams p;
    TensorShape ys;
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, Prepare(ctx, &p, &ys, &y));
    const i64 total = ys.num_elements();
    if (total == 0) return;
    T* yp = y->flat<T>().data();
    const T* xp = ctx->input(0).flat<T>().data();
    const T* wp = ctx->input(1).flat<T>().data();
    const i64 K = p.KH * p.KW * p.C;
    if (K == 0) {
      SetZero(ctx, yp, total);
      return;
    }
    if (UseDirect()) return DirectLoop<CorrForwardStore>(ctx, p, K * 2, xp, wp, yp);
    const i64 P = p.OH * p.OW, R = BlockRows(K, P), blocks = (P + R - 1) / R;
    const CorrTables tab(p);
    const bool tapmajor = UseTapMajor(p);
    std::vector<A> wstore;
    const A* wa = KernelAsAcc<T, A>(wp, K * p.F, &wstore);
    Eigen::Map<const RowMat<A>> Wm(wa, K, p.F);
    ParFor(ctx, p.N * blocks, R * K * p.F, [&](i64 b, i64 e) {
      std::vector<A> buf(R * K), out(R * p.F);
      for (i64 u = b; u < e; ++u) {
        const i64 n = u / blocks, p0 = (u % blocks) * R, rows = std::min(R, P - p0);
        auto product = [&](const auto& Am) {
        if constexpr (std::is_same<T, A>::value) {
          if (p.yl.sC == 1 && p.F < kColMajorBelow) {
            // Few filters: a row-major (rows x F) product would run Eigen's 48-row register
            // blocks over the F rows of the transposed problem; go through a column-major block.
            Eigen::Map<ColMat<A>> Tm(out.data(), rows, p.F);
            Tm.noalias() = Am * Wm;
            Eigen::Map<RowMat<A>> Y(yp + n * p.yl.sN + p0 * p.F, rows, p.F);
            Y = Tm;
          } else if (p.yl.sC == 1) {
            Eigen::Map<RowMat<A>> Y(yp + n * p.yl.sN + p0 * p.F, rows, p.F);
            Y.noalias() = Am * Wm;
          } else {
            Eigen::Map<ColMat<A>, 0, Eigen::OuterStride<>> Y(yp + n * p.yl.sN + p0, rows, p.F,
                                                             Eigen::OuterStride<>(P));
            Y.noalias() = Am * Wm;
          }
        } else {
          Eigen::Map<ColMat<A>> Y(out.data(), rows, p.F);
          Y.noalias() = Am * Wm;
          T* base = yp + n * p.yl.sN;
          for (i64 r = 0; r < rows; ++r)
            for (i64 f = 0; f < p.F; ++f)
              base[p.yl.sC == 1 ? (p0 + r) * p.F + f : f * P + p0 + r] =
                  static_cast<T>(out[f * rows + r]);
        }
        };
        if (tapmajor) {
          Im2ColTapMajor<T, A>(p, tab, xp, n, p0, rows, buf.data());
          product(Eigen::Map<const ColMat<A>>(buf.data(), rows, K));
        } else {
          Im2Col<T, A>(p, tab, xp, n, p0, rows, buf.data());
          product(Eigen::Map<const RowMat<A>>(buf.data(), rows, K));
        }
      }
    });
  }
};

template <typename T>
class Corr2DBackpropInputOp : public CpuKernel<kCorrBackpropInput> {
 public:
  using WindowKernel::WindowKernel;
  void Compute(OpKernelContext* ctx) override {
    typedef typename AccOf<T>::type A;
    CorrParams p;
    TensorShape ys;
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(ctx, Prepare(ctx, &p, &ys, &dx));
    const i64 total = dx->NumElements();
    if (total == 0) return;
    T* dxp = dx->flat<T>().data();
    const T* wp = ctx->input(1).flat<T>().data();
    const T* dyp = ctx->input(2).flat<T>().data();
    const i64 K = p.KH * p.KW * p.C;
    if (ys.num_elements() == 0 || K == 0) {
      SetZero(ctx, dxp, total);
      return;
    }
    if (UseDirect())
      return DirectLoop<CorrBackpropInputStore>(ctx, p, p.KH * p.KW * p.F * 2, wp, dyp, dxp);
    const i64 P = p.OH * p.OW, R = BlockRows(K, P), HWC = p.H * p.W * p.C;
    const CorrTables tab(p);
    const bool tapmajor = UseTapMajor(p);
    std::vector<A> wstore;
    const A* wa = KernelAsAcc<T, A>(wp, K * p.F, &wstore);
    Eigen::Map<const RowMat<A>> Wm(wa, K, p.F);
    ParFor(ctx, p.N, P * K * p.F * 2, [&](i64 b, i64 e) {
      std::vector<A> acc(HWC), cols(R * K), dyb(R * p.F);
      for (i64 n = b; n < e; ++n) {
        std::fill(acc.begin(), acc.end(), A(0));
        for (i64 p0 = 0; p0 < P; p0 += R) {
          const i64 rows = std::min(R, P - p0);
          auto product = [&](auto&& Cm) {
            if (std::is_same<T, A>::value && p.yl.sC == 1) {
              Eigen::Map<const RowMat<A>> D(
                  reinterpret_cast<const A*>(dyp) + n * p.yl.sN + p0 * p.F, rows, p.F);
              Cm.noalias() = D * Wm.transpose();
            } else {
              LoadRows<T, A>(p, dyp, n, p0, rows, dyb.data());
              Eigen::Map<const RowMat<A>> D(dyb.data(), rows, p.F);
              Cm.noalias() = D * Wm.transpose();
            }
          };
          if (tapmajor) {
            product(Eigen::Map<ColMat<A>>(cols.data(), rows, K));
            Col2ImTapMajor<A>(p, tab, cols.data(), p0, rows, acc.data());
          } else {
            product(Eigen::Map<RowMat<A>>(cols.data(), rows, K));
            Col2Im<A>(p, tab, cols.data(), p0, rows, acc.data());
          }
        }
        T* out = dxp + n * p.xl.sN;
        if (p.xl.sC == 1) {
          for (i64 i = 0; i < HWC; ++i) out[i] = static_cast<T>(acc[i]);
        } else {
          const i64 HW = p.H * p.W;
          for (i64 i = 0; i < HW; ++i)
            for (i64 c = 0; c < p.C; ++c) out[c * HW + i] = static_cast<T>(acc[i * p.C + c]);
        }
      }
    });
  }
};

template <typename T>
class Corr2DBackpropFilterOp : public CpuKernel<kCorrBackpropFilter> {
 public:
  using WindowKernel::WindowKernel;
  void Compute(OpKernelContext* ctx) override {
    typedef typename AccOf<T>::type A;
    CorrParams p;
    TensorShape ys;
    Tensor* dw = nullptr;
    OP_REQUIRES_OK(ctx, Prepare(ctx, &p, &ys, &dw));
    const i64 total = dw->NumElements();
    if (total == 0) return;
    T* dwp = dw->flat<T>().data();
    const T* xp = ctx->input(0).flat<T>().data();
    const T* dyp = ctx->input(2).flat<T>().data();
    if (ys.num_elements() == 0) {
      SetZero(ctx, dwp, total);
      return;
    }
    if (UseDirect())
      return DirectLoop<CorrBackpropFilterStore>(ctx, p, p.N * p.OH * p.OW * 2, xp, dyp, dwp);
    const i64 K = p.KH * p.KW * p.C, P = p.OH * p.OW, R = BlockRows(K, P, i64{1} << 19);
    const i64 blocks = (P + R - 1) / R, units = p.N * blocks;
    const CorrTables tab(p);
    const bool tapmajor = UseTapMajor(p);
    const i64 groups = std::min<i64>(units, NumThreads(ctx));
    std::vector<A> partial(groups * K * p.F, A(0));
    ParFor(ctx, groups, i64{1} << 40, [&](i64 gb, i64 ge) {
      std::vector<A> cols(R * K), dyb(R * p.F);
      for (i64 g = gb; g < ge; ++g) {
        // Column-major: Eigen's register blocks then run over the K rows of dW (often > F).
        Eigen::Map<ColMat<A>> G(partial.data() + g * K * p.F, K, p.F);
        for (i64 u = g * units / groups; u < (g + 1) * units / groups; ++u) {
          const i64 n = u / blocks, p0 = (u % blocks) * R, rows = std::min(R, P - p0);
          auto product = [&](const auto& Cm) {
            if (std::is_same<T, A>::value && p.yl.sC == 1) {
              Eigen::Map<const RowMat<A>> D(
                  reinterpret_cast<const A*>(dyp) + n * p.yl.sN + p0 * p.F, rows, p.F);
              G.noalias() += Cm.transpose() * D;
            } else {
              LoadRows<T, A>(p, dyp, n, p0, rows, dyb.data());
              Eigen::Map<const RowMat<A>> D(dyb.data(), rows, p.F);
              G.noalias() += Cm.transpose() * D;
            }
          };
          if (tapmajor) {
            Im2ColTapMajor<T, A>(p, tab, xp, n, p0, rows, cols.data());
            product(Eigen::Map<const ColMat<A>>(cols.data(), rows, K));
          } else {
            Im2Col<T, A>(p, tab, xp, n, p0, rows, cols.data());
            product(Eigen::Map<const RowMat<A>>(cols.data(), rows, K));
          }
        }
      }
    });
    for (i64 g = 1; g < groups; ++g)
      for (i64 i = 0; i < K * p.F; ++i) partial[i] += partial[g * K * p.F + i];
    for (i64 k = 0; k < K; ++k)
      for (i64 f = 0; f < p.F; ++f) dwp[k * p.F + f] = static_cast<T>(partial[f * K + k]);
  }
};

// ============================== pooling ==============================

// How many windows cover an input cell at most.
i64 Cover(const PoolParams& p) {
  return ((p.KH + p.sh - 1) / p.sh) * ((p.KW + p.sw - 1) / p.sw);
}

// Whether the windows never overlap (each input cell belongs to at most one window).
bool Disjoint(const PoolParams& p) { return p.sh >= p.KH && p.sw >= p.KW; }

// Whether every input cell belongs to some window (so a disjoint backward pass writes all of dx).
bool Covers(const PoolParams& p) {
  return p.sh == p.KH && p.sw == p.KW && (p.OH - 1) * p.sh - p.pt + p.KH >= p.H &&
         (p.OW - 1) * p.sw - p.pl + p.KW >= p.W;
}

// Branch-free, vectorizable per-channel steps of the max-pool gradient (the __restrict pointers let
// the compiler use blends instead of unpredictable branches).
template <typename T, typename A, typename I>
void ArgmaxInit(const T* __restrict src, A* __restrict best, I* __restrict arg, I k, i64 C) {
  for (i64 c = 0; c < C; ++c) {
    best[c] = src ? static_cast<A>(src[c]) : A(0);
    arg[c] = k;
  }
}

template <typename T, typename A, typename I>
void ArgmaxStep(const T* __restrict src, A* __restrict best, I* __restrict arg, I k, i64 C) {
  for (i64 c = 0; c < C; ++c) {
    const A v = static_cast<A>(src[c]);
    const A b = best[c];
    const I a = arg[c];
    const bool gt = v > b || b != b;  // NaN never wins
    best[c] = gt ? v : b;
    arg[c] = gt ? k : a;
  }
}

template <typename A, typename I>
void ArgmaxZeroStep(A* __restrict best, I* __restrict arg, I k, i64 C) {
  for (i64 c = 0; c < C; ++c) {
    const A b = best[c];
    const I a = arg[c];
    const bool gt = A(0) > b || b != b;
    best[c] = gt ? A(0) : b;
    arg[c] = gt ? k : a;
  }
}

template <typename T, typename I>
void RouteWindowCell(T* __restrict d, const T* __restrict g, const I* __restrict arg, I k, i64 C) {
  for (i64 c = 0; c < C; ++c) d[c] = arg[c] == k ? g[c] : T(0);
}

template <typename T>
class MaxPool2DOp : public CpuKernel<kPoolForward> {
 public:
  using WindowKernel::WindowKernel;
  void Compute(OpKernelContext* ctx) override {
    typedef typename AccOf<T>::type A;
    PoolParams p;
    TensorShape ys;
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, Prepare(ctx, &p, &ys, &y));
    if (ys.num_elements() == 0) return;
    const T* xp = ctx->input(0).flat<T>().data();
    T* yp = y->flat<T>().data();
    if (UseDirect() || p.xl.sC != 1)
      return DirectLoop<MaxPoolForwardStore>(ctx, p, p.KH * p.KW * 3, xp, xp, yp);
    const i64 C = p.C;
    ParFor(ctx, p.N * p.OH, p.OW * p.KH * p.KW * C, [&](i64 b, i64 e) {
      std::vector<A> best(C);
      for (i64 u = b; u < e; ++u) {
        const i64 n = u / p.OH, oh = u % p.OH;
        i64 r0, r1;
        WindowRange(oh, p.sh, p.pt, p.KH, p.H, &r0, &r1);
        for (i64 ow = 0; ow < p.OW; ++ow) {
          i64 c0, c1;
          WindowRange(ow, p.sw, p.pl, p.KW, p.W, &c0, &c1);
          const T* first = xp + Offset(p.xl, n, r0, c0, 0);
          for (i64 c = 0; c < C; ++c) best[c] = static_cast<A>(first[c]);
          for (i64 h = r0; h < r1; ++h)
            for (i64 w = c0; w < c1; ++w) {
              const T* src = xp + Offset(p.xl, n, h, w, 0);
              for (i64 c = 0; c < C; ++c) {
                const A v = static_cast<A>(src[c]);
                const A b = best[c];
                best[c] = (v > b || b != b) ? v : b;  // NaN never wins
              }
            }
          if (p.mode == kZeros && (r1 - r0) * (c1 - c0) < p.KH * p.KW)
            for (i64 c = 0; c < C; ++c) {
              const A b = best[c];
              best[c] = (A(0) > b || b != b) ? A(0) : b;
            }
          T* dst = yp + Offset(p.yl, n, oh, ow, 0);
          for (i64 c = 0; c < C; ++c) dst[c] = static_cast<T>(best[c]);
        }
      }
    });
  }
};

template <typename T>
class MaxPool2DGradOp : public CpuKernel<kMaxPoolGrad> {
 public:
  using WindowKernel::WindowKernel;
  void Compute(OpKernelContext* ctx) override {
    typedef typename AccOf<T>::type A;
    typedef typename SameWidthInt<A>::type I;
    PoolParams p;
    TensorShape ys;
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(ctx, Prepare(ctx, &p, &ys, &dx));
    const i64 total = dx->NumElements();
    if (total == 0) return;
    const T* xp = ctx->input(0).flat<T>().data();
    const T* dyp = ctx->input(1).flat<T>().data();
    T* dxp = dx->flat<T>().data();
    if (ys.num_elements() == 0) {
      SetZero(ctx, dxp, total);
      return;
    }
    if (UseDirect() || p.xl.sC != 1)
      return DirectLoop<MaxPoolGradStore>(ctx, p, Cover(p) * p.KH * p.KW * 3, xp, dyp, dxp);
    const i64 C = p.C;
    const bool disjoint = Disjoint(p);
    if (disjoint && !Covers(p)) SetZero(ctx, dxp, total);
    // Argmax (window-local cell index, row-major, padded cells included) of window (n, oh, ow).
    auto argmax = [&](i64 n, i64 oh, i64 ow, A* best, I* arg) {
      const i64 h0 = oh * p.sh - p.pt, w0 = ow * p.sw - p.pl;
      bool first = true;
      for (i64 i = 0; i < p.KH; ++i) {
        const i64 h = h0 + i;
        const bool hin = h >= 0 && h < p.H;
        for (i64 j = 0; j < p.KW; ++j) {
          const i64 w = w0 + j;
          const I k = static_cast<I>(i * p.KW + j);
          if (hin && w >= 0 && w < p.W) {
            const T* src = xp + Offset(p.xl, n, h, w, 0);
            if (first) {
              ArgmaxInit<T, A, I>(src, best, arg, k, C);
            } else {
              ArgmaxStep<T, A, I>(src, best, arg, k, C);
            }
          } else if (p.mode == kZeros) {
            if (first) {
              ArgmaxInit<T, A, I>(nullptr, best, arg, k, C);
            } else {
              ArgmaxZeroStep<A, I>(best, arg, k, C);
            }
          } else {
            continue;
          }
          first = false;
        }
      }
    };
    if (disjoint) {
      ParFor(ctx, p.N * p.OH, p.OW * p.KH * p.KW * C * 2, [&](i64 b, i64 e) {
        std::vector<A> best(C);
        std::vector<I> arg(C);
        for (i64 u = b; u < e; ++u) {
          const i64 n = u / p.OH, oh = u % p.OH;
          for (i64 ow = 0; ow < p.OW; ++ow) {
            argmax(n, oh, ow, best.data(), arg.data());
            const T* g = dyp + Offset(p.yl, n, oh, ow, 0);
            const i64 h0 = oh * p.sh - p.pt, w0 = ow * p.sw - p.pl;
            for (i64 i = 0; i < p.KH; ++i) {
              const i64 h = h0 + i;
              if (h < 0 || h >= p.H) continue;
              for (i64 j = 0; j < p.KW; ++j) {
                const i64 w = w0 + j;
                if (w < 0 || w >= p.W) continue;
                const I k = static_cast<I>(i * p.KW + j);
                RouteWindowCell<T, I>(dxp + Offset(p.xl, n, h, w, 0), g, arg.data(), k, C);
              }
            }
          }
        }
      });
      return;
    }
    // Overlapping windows: one image per task, scatter-add in the accumulation type.
    ParFor(ctx, p.N, p.OH * p.OW * p.KH * p.KW * C * 2, [&](i64 b, i64 e) {
      std::vector<A> best(C), acc(p.H * p.W * C);
      std::vector<I> arg(C);
      for (i64 n = b; n < e; ++n) {
        std::fill(acc.begin(), acc.end(), A(0));
        for (i64 oh = 0; oh < p.OH; ++oh)
          for (i64 ow = 0; ow < p.OW; ++ow) {
            argmax(n, oh, ow, best.data(), arg.data());
            const T* g = dyp + Offset(p.yl, n, oh, ow, 0);
            const i64 h0 = oh * p.sh - p.pt, w0 = ow * p.sw - p.pl;
            for (i64 c = 0; c < C; ++c) {
              const i64 h = h0 + arg[c] / p.KW, w = w0 + arg[c] % p.KW;
              if (h >= 0 && h < p.H && w >= 0 && w < p.W)
                acc[(h * p.W + w) * C + c] += static_cast<A>(g[c]);
            }
          }
        T* out = dxp + n * p.xl.sN;
        for (i64 i = 0; i < p.H * p.W * C; ++i) out[i] = static_cast<T>(acc[i]);
      }
    });
  }
};

template <typename T>
class MeanPool2DOp : public CpuKernel<kPoolForward> {
 public:
  using WindowKernel::WindowKernel;
  void Compute(OpKernelContext* ctx) override {
    typedef typename AccOf<T>::type A;
    PoolParams p;
    TensorShape ys;
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, Prepare(ctx, &p, &ys, &y));
    if (ys.num_elements() == 0) return;
    const T* xp = ctx->input(0).flat<T>().data();
    T* yp = y->flat<T>().data();
    if (UseDirect() || p.xl.sC != 1)
      return DirectLoop<MeanPoolForwardStore>(ctx, p, p.KH * p.KW * 2, xp, xp, yp);
    const i64 C = p.C;
    ParFor(ctx, p.N * p.OH, p.OW * p.KH * p.KW * C, [&](i64 b, i64 e) {
      std::vector<A> acc(C);
      for (i64 u = b; u < e; ++u) {
        const i64 n = u / p.OH, oh = u % p.OH;
        i64 r0, r1;
        WindowRange(oh, p.sh, p.pt, p.KH, p.H, &r0, &r1);
        for (i64 ow = 0; ow < p.OW; ++ow) {
          i64 c0, c1;
          WindowRange(ow, p.sw, p.pl, p.KW, p.W, &c0, &c1);
          std::fill(acc.begin(), acc.end(), A(0));
          for (i64 h = r0; h < r1; ++h)
            for (i64 w = c0; w < c1; ++w) {
              const T* src = xp + Offset(p.xl, n, h, w, 0);
              for (i64 c = 0; c < C; ++c) acc[c] += static_cast<A>(src[c]);
            }
          const A div = static_cast<A>(PoolDivisor(p, oh, ow));
          T* dst = yp + Offset(p.yl, n, oh, ow, 0);
          for (i64 c = 0; c < C; ++c) dst[c] = static_cast<T>(acc[c] / div);
        }
      }
    });
  }
};

template <typename T>
class MeanPool2DGradOp : public CpuKernel<kMeanPoolGrad> {
 public:
  using WindowKernel::WindowKernel;
  void Compute(OpKernelContext* ctx) override {
    typedef typename AccOf<T>::type A;
    PoolParams p;
    TensorShape ys;
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(ctx, Prepare(ctx, &p, &ys, &dx));
    const i64 total = dx->NumElements();
    if (total == 0) return;
    const T* dyp = ctx->input(1).flat<T>().data();
    T* dxp = dx->flat<T>().data();
    if (ys.num_elements() == 0) {
      SetZero(ctx, dxp, total);
      return;
    }
    if (UseDirect() || p.xl.sC != 1)
      return DirectLoop<MeanPoolGradStore>(ctx, p, Cover(p) * 4, dyp, dyp, dxp);
    const i64 C = p.C;
    const bool disjoint = Disjoint(p);
    if (disjoint) {
      if (!Covers(p)) SetZero(ctx, dxp, total);
      ParFor(ctx, p.N * p.OH, p.OW * p.KH * p.KW * C, [&](i64 b, i64 e) {
        std::vector<T> val(C);
        for (i64 u = b; u < e; ++u) {
          const i64 n = u / p.OH, oh = u % p.OH;
          i64 r0, r1;
          WindowRange(oh, p.sh, p.pt, p.KH, p.H, &r0, &r1);
          for (i64 ow = 0; ow < p.OW; ++ow) {
            i64 c0, c1;
            WindowRange(ow, p.sw, p.pl, p.KW, p.W, &c0, &c1);
            const A div = static_cast<A>(PoolDivisor(p, oh, ow));
            const T* g = dyp + Offset(p.yl, n, oh, ow, 0);
            for (i64 c = 0; c < C; ++c) val[c] = static_cast<T>(static_cast<A>(g[c]) / div);
            for (i64 h = r0; h < r1; ++h)
              for (i64 w = c0; w < c1; ++w) {
                T* d = dxp + Offset(p.xl, n, h, w, 0);
                for (i64 c = 0; c < C; ++c) d[c] = val[c];
              }
          }
        }
      });
      return;
    }
    ParFor(ctx, p.N, p.OH * p.OW * p.KH * p.KW * C, [&](i64 b, i64 e) {
      std::vector<A> acc(p.H * p.W * C), val(C);
      for (i64 n = b; n < e; ++n) {
        std::fill(acc.begin(), acc.end(), A(0));
        for (i64 oh = 0; oh < p.OH; ++oh) {
          i64 r0, r1;
          WindowRange(oh, p.sh, p.pt, p.KH, p.H, &r0, &r1);
          for (i64 ow = 0; ow < p.OW; ++ow) {
            i64 c0, c1;
            WindowRange(ow, p.sw, p.pl, p.KW, p.W, &c0, &c1);
            const A div = static_cast<A>(PoolDivisor(p, oh, ow));
            const T* g = dyp + Offset(p.yl, n, oh, ow, 0);
            for (i64 c = 0; c < C; ++c) val[c] = static_cast<A>(g[c]) / div;
            for (i64 h = r0; h < r1; ++h)
              for (i64 w = c0; w < c1; ++w) {
                A* d = acc.data() + (h * p.W + w) * C;
                for (i64 c = 0; c < C; ++c) d[c] += val[c];
              }
          }
        }
        T* out = dxp + n * p.xl.sN;
        for (i64 i = 0; i < p.H * p.W * C; ++i) out[i] = static_cast<T>(acc[i]);
      }
    });
  }
};

}  // namespace
}  // namespace kce

#define KCE_REGISTER_CPU(T)                                                                   \
  KCE_REGISTER_ALL(tensorflow::DEVICE_CPU, T, Corr2DOp, Corr2DBackpropInputOp,                    \
                   Corr2DBackpropFilterOp, MaxPool2DOp, MaxPool2DGradOp, MeanPool2DOp,            \
                   MeanPool2DGradOp)

KCE_REGISTER_CPU(Eigen::half);
KCE_REGISTER_CPU(tensorflow::bfloat16);
KCE_REGISTER_CPU(float);
KCE_REGISTER_CPU(double);
