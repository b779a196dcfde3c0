// CPU kernels of the correlation ops: KerasCnnExt>Corr2D, >Corr2DBackpropInput,
// >Corr2DBackpropFilter. "Fast" algorithm: blocked im2col into a cache-sized buffer + Eigen GEMM
// (col2im scatter for the input gradient, per-thread partial sums for the kernel gradient), with
// groups > 1 in corr2d_grouped.h (depthwise loops, per-group im2col + GEMM);
// "direct": the per-element functors the CUDA kernels run (cpu_util.h).
#define EIGEN_USE_THREADS

#include <algorithm>
#include <type_traits>
#include <vector>

#include "kernels/corr2d_grouped.h"
#include "kernels/corr2d_im2col.h"
#include "kernels/cpu_util.h"

namespace kce {
namespace {

using tensorflow::OpKernelContext;

// Forward products with fewer filters than this go through a column-major block (see
// StoreForwardBlock). (Measured: no gain above 32 filters, a 2.5x faster forward for LeNet's 6.)
constexpr i64 kColMajorBelow = 32;

// y rows [p0, p0 + rows) of image n = Am (rows x K patch block) * Wm (K x F), stored in y's layout.
// `out` is a rows x F scratch block.
template <typename T, typename A, typename AMat, typename WMat>
void StoreForwardBlock(const CorrParams& p, const AMat& Am, const WMat& Wm, T* yp, A* out, i64 n,
                       i64 p0, i64 rows) {
  const i64 P = p.OH * p.OW;
  if constexpr (std::is_same<T, A>::value) {
    if (p.yl.sC == 1 && p.F < kColMajorBelow) {
      // Few filters: a row-major (rows x F) product would run Eigen's 48-row register blocks over
      // the F rows of the transposed problem; go through a column-major block.
      Eigen::Map<ColMat<A>> Tm(out, rows, p.F);
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
    Eigen::Map<ColMat<A>> Y(out, rows, p.F);
    Y.noalias() = Am * Wm;
    T* base = yp + n * p.yl.sN;
    for (i64 r = 0; r < rows; ++r)
      for (i64 f = 0; f < p.F; ++f)
        base[p.yl.sC == 1 ? (p0 + r) * p.F + f : f * P + p0 + r] =
            static_cast<T>(out[f * rows + r]);
  }
}

// Rows [p0, p0 + rows) x F of image n's upstream gradient as a row-major matrix of A: a view of dy
// itself where the layouts agree, else a copy into `scratch`.
template <typename T, typename A>
Eigen::Map<const RowMat<A>> UpstreamRows(const CorrParams& p, const T* dyp, i64 n, i64 p0,
                                         i64 rows, A* scratch) {
  if (std::is_same<T, A>::value && p.yl.sC == 1)
    return Eigen::Map<const RowMat<A>>(reinterpret_cast<const A*>(dyp) + n * p.yl.sN + p0 * p.F,
                                       rows, p.F);
  LoadRows<T, A>(p, dyp, n, p0, rows, scratch);
  return Eigen::Map<const RowMat<A>>(scratch, rows, p.F);
}

// Writes image n's input gradient (acc: H * W * C, channels last) in dx's layout.
template <typename T, typename A>
void StoreImage(const CorrParams& p, const A* acc, T* dxp, i64 n) {
  T* out = dxp + n * p.xl.sN;
  const i64 HW = p.H * p.W;
  if (p.xl.sC == 1) {
    for (i64 i = 0; i < HW * p.C; ++i) out[i] = static_cast<T>(acc[i]);
  } else {
    for (i64 i = 0; i < HW; ++i)
      for (i64 c = 0; c < p.C; ++c) out[c * HW + i] = static_cast<T>(acc[i * p.C + c]);
  }
}

// The fast algorithm of each op (CpuOp in cpu_util.h has dispatched the empty and "direct" cases).
struct CorrForwardFast {  // (x, w) -> y
  static bool Supports(const CorrParams&) { return true; }
  template <typename T>
  static void Run(OpKernelContext* ctx, const CorrParams& p, const T* xp, const T* wp, T* yp) {
    if (UseDepthwise(p)) return DepthwiseForward::Run(ctx, p, xp, wp, yp);
    if (p.G > 1) return GroupedForward::Run(ctx, p, xp, wp, yp);
    typedef AccT<T> A;
    const i64 K = p.KH * p.KW * p.C;
    const i64 P = p.OH * p.OW, R = BlockRows(K, P), blocks = (P + R - 1) / R;
    const CorrTables tab(p);
    const bool tapmajor = UseTapMajor(p);
    std::vector<A> wstore;
    Eigen::Map<const RowMat<A>> Wm(KernelAsAcc<T, A>(wp, K * p.F, &wstore), K, p.F);
    ParFor(ctx, p.N * blocks, R * K * p.F, [&](i64 b, i64 e) {
      std::vector<A> buf(R * K), out(R * p.F);
      for (i64 u = b; u < e; ++u) {
        const i64 n = u / blocks, p0 = (u % blocks) * R, rows = std::min(R, P - p0);
        if (tapmajor) {
          Im2ColTapMajor<T, A>(p, tab, xp, n, p0, rows, buf.data());
          StoreForwardBlock<T, A>(p, Eigen::Map<const ColMat<A>>(buf.data(), rows, K), Wm, yp,
                                  out.data(), n, p0, rows);
        } else {
          Im2Col<T, A>(p, tab, xp, n, p0, rows, buf.data());
          StoreForwardBlock<T, A>(p, Eigen::Map<const RowMat<A>>(buf.data(), rows, K), Wm, yp,
                                  out.data(), n, p0, rows);
        }
      }
    });
  }
};

struct CorrBackpropInputFast {  // (w, dy) -> dx
  static bool Supports(const CorrParams&) { return true; }
  template <typename T>
  static void Run(OpKernelContext* ctx, const CorrParams& p, const T* wp, const T* dyp, T* dxp) {
    if (UseDepthwise(p)) return DepthwiseBackpropInput::Run(ctx, p, wp, dyp, dxp);
    if (p.G > 1) return GroupedBackpropInput::Run(ctx, p, wp, dyp, dxp);
    typedef AccT<T> A;
    const i64 K = p.KH * p.KW * p.C, P = p.OH * p.OW, R = BlockRows(K, P);
    const CorrTables tab(p);
    const bool tapmajor = UseTapMajor(p);
    std::vector<A> wstore;
    Eigen::Map<const RowMat<A>> Wm(KernelAsAcc<T, A>(wp, K * p.F, &wstore), K, p.F);
    // One image per task: the column gradients of each block (dy rows x W^T) scatter-add onto an
    // accumulator of the image.
    ParFor(ctx, p.N, P * K * p.F * 2, [&](i64 b, i64 e) {
      std::vector<A> acc(p.H * p.W * p.C), cols(R * K), dyb(R * p.F);
      for (i64 n = b; n < e; ++n) {
        std::fill(acc.begin(), acc.end(), A(0));
        for (i64 p0 = 0; p0 < P; p0 += R) {
          const i64 rows = std::min(R, P - p0);
          const auto D = UpstreamRows<T, A>(p, dyp, n, p0, rows, dyb.data());
          if (tapmajor) {
            Eigen::Map<ColMat<A>>(cols.data(), rows, K).noalias() = D * Wm.transpose();
            Col2ImTapMajor<A>(p, tab, cols.data(), p0, rows, acc.data());
          } else {
            Eigen::Map<RowMat<A>>(cols.data(), rows, K).noalias() = D * Wm.transpose();
            Col2Im<A>(p, tab, cols.data(), p0, rows, acc.data());
          }
        }
        StoreImage<T, A>(p, acc.data(), dxp, n);
      }
    });
  }
};

struct CorrBackpropFilterFast {  // (x, dy) -> dw
  static bool Supports(const CorrParams&) { return true; }
  template <typename T>
  static void Run(OpKernelContext* ctx, const CorrParams& p, const T* xp, const T* dyp, T* dwp) {
    if (UseDepthwise(p)) return DepthwiseBackpropFilter::Run(ctx, p, xp, dyp, dwp);
    if (p.G > 1) return GroupedBackpropFilter::Run(ctx, p, xp, dyp, dwp);
    typedef AccT<T> A;
    const i64 K = p.KH * p.KW * p.C, P = p.OH * p.OW, R = BlockRows(K, P, i64{1} << 19);
    const i64 blocks = (P + R - 1) / R, units = p.N * blocks;
    const CorrTables tab(p);
    const bool tapmajor = UseTapMajor(p);
    // Each thread group sums patch^T x dy over its share of the blocks into a partial dW.
    const i64 groups = std::min<i64>(units, NumThreads(ctx));
    std::vector<A> partial(groups * K * p.F, A(0));
    ParFor(ctx, groups, i64{1} << 40, [&](i64 gb, i64 ge) {
      std::vector<A> cols(R * K), dyb(R * p.F);
      for (i64 g = gb; g < ge; ++g) {
        // Column-major: Eigen's register blocks then run over the K rows of dW (often > F).
        Eigen::Map<ColMat<A>> G(partial.data() + g * K * p.F, K, p.F);
        for (i64 u = g * units / groups; u < (g + 1) * units / groups; ++u) {
          const i64 n = u / blocks, p0 = (u % blocks) * R, rows = std::min(R, P - p0);
          if (tapmajor) {
            Im2ColTapMajor<T, A>(p, tab, xp, n, p0, rows, cols.data());
            G.noalias() += Eigen::Map<const ColMat<A>>(cols.data(), rows, K).transpose() *
                           UpstreamRows<T, A>(p, dyp, n, p0, rows, dyb.data());
          } else {
            Im2Col<T, A>(p, tab, xp, n, p0, rows, cols.data());
            G.noalias() += Eigen::Map<const RowMat<A>>(cols.data(), rows, K).transpose() *
                           UpstreamRows<T, A>(p, dyp, n, p0, rows, dyb.data());
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

template <typename T>
using Corr2DOp = CpuOp<T, kCorrForward, CorrForwardStore, CorrForwardFast>;
template <typename T>
using Corr2DBackpropInputOp = CpuOp<T, kCorrBackpropInput, CorrBackpropInputStore,
                                    CorrBackpropInputFast>;
template <typename T>
using Corr2DBackpropFilterOp = CpuOp<T, kCorrBackpropFilter, CorrBackpropFilterStore,
                                     CorrBackpropFilterFast>;

}  // namespace
}  // namespace kce

#define KCE_REGISTER_CPU(T)                                                        \
  KCE_REGISTER_CORR2D(tensorflow::DEVICE_CPU, T, Corr2DOp, Corr2DBackpropInputOp, \
                      Corr2DBackpropFilterOp);
KCE_CALL_TYPES(KCE_REGISTER_CPU)
#undef KCE_REGISTER_CPU
