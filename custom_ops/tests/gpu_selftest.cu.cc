// Standalone check of the CUDA kernels without TensorFlow: runs every launcher of
// custom_ops/cc/kernels/*_gpu.cu.cc on random geometries (all padding modes, both layouts, float and
// double, pooling inputs with NaN) and compares the device results with the same per-element
// functors run on the host (the CPU "direct" path, which tests/test_native.py checks against the
// NumPy reference).
//
//   nvcc -std=c++17 -O2 -x cu -I custom_ops/cc custom_ops/tests/gpu_selftest.cu.cc \
//        custom_ops/cc/kernels/corr2d_op_gpu.cu.cc custom_ops/cc/kernels/pool2d_op_gpu.cu.cc \
//        -o gpu_selftest && ./gpu_selftest
//
// Exits 0 with "no CUDA device" when there is no GPU (.ci/build_cuda.sh only compiles it then).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "kernels/gpu_launch.h"

using kce::i64;

namespace {

std::mt19937_64 rng(12345);

i64 Rand(i64 lo, i64 hi) { return std::uniform_int_distribution<i64>(lo, hi)(rng); }

template <typename T>
std::vector<T> Random(i64 n) {
  std::normal_distribution<double> d;
  std::vector<T> v(n);
  for (auto& e : v) e = static_cast<T>(d(rng));
  if (Rand(0, 3) == 0)  // ties
    for (auto& e : v) e = static_cast<T>(Rand(-1, 1));
  return v;
}

template <typename T>
struct Dev {
  T* ptr = nullptr;
  i64 n;
  explicit Dev(const std::vector<T>& h) : n(h.size()) {
    cudaMalloc(&ptr, sizeof(T) * (n ? n : 1));
    if (n) cudaMemcpy(ptr, h.data(), sizeof(T) * n, cudaMemcpyHostToDevice);
  }
  explicit Dev(i64 size) : n(size) { cudaMalloc(&ptr, sizeof(T) * (n ? n : 1)); }
  std::vector<T> Get() const {
    std::vector<T> h(n);
    if (n) cudaMemcpy(h.data(), ptr, sizeof(T) * n, cudaMemcpyDeviceToHost);
    return h;
  }
  ~Dev() { cudaFree(ptr); }
};

int failures = 0;

template <typename T>
void Compare(const char* what, const std::vector<T>& got, const std::vector<T>& want) {
  const double tol = sizeof(T) == 8 ? 1e-9 : 1e-3;
  for (size_t i = 0; i < got.size(); ++i) {
    const double a = got[i], b = want[i];
    if (std::isnan(a) && std::isnan(b)) continue;
    if (!(std::fabs(a - b) <= tol * (1 + std::fabs(b)))) {
      std::printf("MISMATCH %s at %zu: gpu %g host %g\n", what, i, a, b);
      ++failures;
      return;
    }
  }
}

template <typename T>
constexpr kce::gpu::DType Tag() { return sizeof(T) == 8 ? kce::gpu::kF64 : kce::gpu::kF32; }

template <typename T>
void CorrCase() {
  kce::CorrParams p;
  // groups (depthwise and channel multipliers included) and dilations
  p.G = Rand(1, 3); p.Cg = Rand(1, 3); p.Fg = Rand(1, 3);
  p.N = Rand(1, 2); p.H = Rand(1, 9); p.W = Rand(1, 9); p.C = p.G * p.Cg; p.F = p.G * p.Fg;
  p.KH = Rand(1, 4); p.KW = Rand(1, 4); p.sh = Rand(1, 3); p.sw = Rand(1, 3);
  p.dh = Rand(1, 3); p.dw = Rand(1, 3);
  p.mode = static_cast<int>(Rand(0, 2));
  p.flip = Rand(0, 1);
  const i64 lh = p.mode == kce::kReflect ? p.H - 1 : 3, lw = p.mode == kce::kReflect ? p.W - 1 : 3;
  p.pt = Rand(0, lh); p.pb = Rand(0, lh); p.pl = Rand(0, lw); p.pr = Rand(0, lw);
  const i64 eh = p.dh * (p.KH - 1) + 1, ew = p.dw * (p.KW - 1) + 1;  // dilated extents
  if (p.H + p.pt + p.pb < eh || p.W + p.pl + p.pr < ew) return;
  p.OH = (p.H + p.pt + p.pb - eh) / p.sh + 1;
  p.OW = (p.W + p.pl + p.pr - ew) / p.sw + 1;
  const bool cl = Rand(0, 1);
  p.xl = kce::MakeLayout(cl, p.H, p.W, p.C);
  p.yl = kce::MakeLayout(cl, p.OH, p.OW, p.F);
  const i64 nx = p.N * p.H * p.W * p.C, nw = p.KH * p.KW * p.Cg * p.F, ny = p.N * p.OH * p.OW * p.F;
  auto x = Random<T>(nx), w = Random<T>(nw), dy = Random<T>(ny);
  Dev<T> dx_(x), dw_(w), ddy(dy), y(ny), dx(nx), dwo(nw);
  kce::gpu::CorrForward(nullptr, Tag<T>(), p, dx_.ptr, dw_.ptr, y.ptr);
  kce::gpu::CorrBackpropInput(nullptr, Tag<T>(), p, dw_.ptr, ddy.ptr, dx.ptr);
  kce::gpu::CorrBackpropFilter(nullptr, Tag<T>(), p, dx_.ptr, ddy.ptr, dwo.ptr);
  std::vector<T> hy(ny), hdx(nx), hdw(nw);
  for (i64 i = 0; i < ny; ++i) {
    i64 r = i, f = r % p.F; r /= p.F;
    i64 ow = r % p.OW; r /= p.OW;
    i64 oh = r % p.OH, n = r / p.OH;
    hy[kce::Offset(p.yl, n, oh, ow, f)] = kce::CorrForwardElem<T, T>(p, x.data(), w.data(), i);
  }
  for (i64 i = 0; i < nx; ++i) {
    i64 r = i, c = r % p.C; r /= p.C;
    i64 ww = r % p.W; r /= p.W;
    i64 hh = r % p.H, n = r / p.H;
    hdx[kce::Offset(p.xl, n, hh, ww, c)] =
        kce::CorrBackpropInputElem<T, T>(p, w.data(), dy.data(), i);
  }
  for (i64 i = 0; i < nw; ++i) hdw[i] = kce::CorrBackpropFilterElem<T, T>(p, x.data(), dy.data(), i);
  Compare("corr2d", y.Get(), hy);
  Compare("corr2d_backprop_input", dx.Get(), hdx);
  Compare("corr2d_backprop_filter", dwo.Get(), hdw);
}

template <typename T>
void PoolCase() {
  kce::PoolParams p;
  p.N = Rand(1, 2); p.H = Rand(1, 9); p.W = Rand(1, 9); p.C = Rand(1, 3);
  p.KH = Rand(1, 3); p.KW = Rand(1, 3); p.sh = Rand(1, 3); p.sw = Rand(1, 3);
  p.pt = Rand(0, p.KH - 1); p.pb = Rand(0, p.KH - 1); p.pl = Rand(0, p.KW - 1);
  p.pr = Rand(0, p.KW - 1);
  p.mode = Rand(0, 1) ? kce::kZeros : kce::kIgnore;
  if (p.H + p.pt + p.pb < p.KH || p.W + p.pl + p.pr < p.KW) return;
  p.OH = (p.H + p.pt + p.pb - p.KH) / p.sh + 1;
  p.OW = (p.W + p.pl + p.pr - p.KW) / p.sw + 1;
  const bool cl = Rand(0, 1);
  p.xl = kce::MakeLayout(cl, p.H, p.W, p.C);
  p.yl = kce::MakeLayout(cl, p.OH, p.OW, p.C);
  const i64 nx = p.N * p.H * p.W * p.C, ny = p.N * p.OH * p.OW * p.C;
  auto x = Random<T>(nx), dy = Random<T>(ny);
  if (Rand(0, 2) == 0)  // NaN ranks above every number (pool2d_functors.h, MaxBeats)
    for (auto& e : x)
      if (Rand(0, 3) == 0) e = std::numeric_limits<T>::quiet_NaN();
  Dev<T> dxin(x), ddy(dy), ymax(ny), ymean(ny), gmax(nx), gmean(nx);
  kce::gpu::MaxPoolForward(nullptr, Tag<T>(), p, dxin.ptr, ymax.ptr);
  kce::gpu::MeanPoolForward(nullptr, Tag<T>(), p, dxin.ptr, ymean.ptr);
  kce::gpu::MaxPoolGrad(nullptr, Tag<T>(), p, dxin.ptr, ddy.ptr, gmax.ptr);
  kce::gpu::MeanPoolGrad(nullptr, Tag<T>(), p, ddy.ptr, gmean.ptr);
  std::vector<T> hmax(ny), hmean(ny), hgmax(nx), hgmean(nx);
  for (i64 i = 0; i < ny; ++i) {
    i64 r = i, c = r % p.C; r /= p.C;
    i64 ow = r % p.OW; r /= p.OW;
    i64 oh = r % p.OH, n = r / p.OH;
    T best;
    kce::MaxPoolArgmax<T, T>(p, x.data(), n, oh, ow, c, &best);
    hmax[kce::Offset(p.yl, n, oh, ow, c)] = best;
    hmean[kce::Offset(p.yl, n, oh, ow, c)] =
        kce::MeanPoolSum<T, T>(p, x.data(), n, oh, ow, c) / T(kce::PoolDivisor(p, oh, ow));
  }
  for (i64 i = 0; i < nx; ++i) {
    i64 r = i, c = r % p.C; r /= p.C;
    i64 ww = r % p.W; r /= p.W;
    i64 hh = r % p.H, n = r / p.H;
    hgmax[kce::Offset(p.xl, n, hh, ww, c)] = kce::MaxPoolGradElem<T, T>(p, x.data(), dy.data(), i);
    hgmean[kce::Offset(p.xl, n, hh, ww, c)] = kce::MeanPoolGradElem<T, T>(p, dy.data(), i);
  }
  Compare("max_pool2d", ymax.Get(), hmax);
  Compare("mean_pool2d", ymean.Get(), hmean);
  Compare("max_pool2d_grad", gmax.Get(), hgmax);
  Compare("mean_pool2d_grad", gmean.Get(), hgmean);
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("gpu_selftest: no CUDA device; nothing run\n");
    return 0;
  }
  for (int i = 0; i < 300; ++i) {
    CorrCase<float>();
    CorrCase<double>();
    PoolCase<float>();
    PoolCase<double>();
  }
  const cudaError_t err = cudaDeviceSynchronize();
  if (err != cudaSuccess) {
    std::printf("gpu_selftest: CUDA error %s\n", cudaGetErrorString(err));
    return 1;
  }
  std::printf("gpu_selftest: %s (%d mismatches)\n", failures ? "FAILED" : "ok", failures);
  return failures ? 1 : 0;
}
