// TensorFlow GPU kernels of keras_cnn_ext's custom ops: a thin wrapper that validates the inputs
// exactly like the CPU kernels (window_kernel.h), allocates the outputs and calls the plain-CUDA
// launchers of corr2d_op_gpu.cu.cc / pool2d_op_gpu.cu.cc on the op's stream. Compiled only when
// TensorFlow is built with CUDA and nvcc is found (build_native.py), with -DGOOGLE_CUDA=1.
#if GOOGLE_CUDA

#define EIGEN_USE_GPU

#include <type_traits>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "unsupported/Eigen/CXX11/Tensor"
#include "kernels/gpu_launch.h"
#include "kernels/window_kernel.h"

namespace kce {
namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;

template <typename T> struct Tag;
template <> struct Tag<Eigen::half> { static constexpr gpu::DType value = gpu::kF16; };
template <> struct Tag<tensorflow::bfloat16> { static constexpr gpu::DType value = gpu::kBF16; };
template <> struct Tag<float> { static constexpr gpu::DType value = gpu::kF32; };
template <> struct Tag<double> { static constexpr gpu::DType value = gpu::kF64; };

void* Stream(OpKernelContext* ctx) {
  return reinterpret_cast<void*>(ctx->eigen_device<Eigen::GpuDevice>().stream());
}

absl::Status Check(int err) {
  if (err == 0) return absl::OkStatus();
  return tensorflow::errors::Internal("CUDA launch failed: ", gpu::ErrorString(err));
}

// The GPU kernel of op Kind: Launch(ctx, p, out) calls the plain-CUDA launcher.
template <typename T, OpKind Kind, typename Launcher>
class GpuKernel : public WindowKernel<Kind, false> {
 public:
  using WindowKernel<Kind, false>::WindowKernel;
  void Compute(OpKernelContext* ctx) override {
    typename WindowKernel<Kind, false>::Params p;
    TensorShape ys;
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, this->Prepare(ctx, &p, &ys, &out));
    if (out->NumElements() == 0) return;
    const T* in[2];
    this->template TensorInputs<T>(ctx, in);
    OP_REQUIRES_OK(ctx, Check(Launcher::Run(Stream(ctx), Tag<T>::value, p, in[0], in[1],
                                            out->flat<T>().data())));
  }
};

#define KCE_GPU_LAUNCHER(NAME, CALL)                                                          \
  struct NAME {                                                                               \
    template <typename P>                                                                     \
    static int Run(void* s, gpu::DType t, const P& p, const void* a, const void* b, void* o) { \
      return CALL;                                                                            \
    }                                                                                         \
  }
KCE_GPU_LAUNCHER(LaunchCorr, gpu::CorrForward(s, t, p, a, b, o));
KCE_GPU_LAUNCHER(LaunchCorrBpi, gpu::CorrBackpropInput(s, t, p, a, b, o));
KCE_GPU_LAUNCHER(LaunchCorrBpf, gpu::CorrBackpropFilter(s, t, p, a, b, o));
KCE_GPU_LAUNCHER(LaunchMaxPool, gpu::MaxPoolForward(s, t, p, a, o));
KCE_GPU_LAUNCHER(LaunchMaxPoolGrad, gpu::MaxPoolGrad(s, t, p, a, b, o));
KCE_GPU_LAUNCHER(LaunchMeanPool, gpu::MeanPoolForward(s, t, p, a, o));
KCE_GPU_LAUNCHER(LaunchMeanPoolGrad, gpu::MeanPoolGrad(s, t, p, a, o));
#undef KCE_GPU_LAUNCHER

template <typename T> using Corr2DGpu = GpuKernel<T, kCorrForward, LaunchCorr>;
template <typename T> using Corr2DBackpropInputGpu = GpuKernel<T, kCorrBackpropInput, LaunchCorrBpi>;
template <typename T>
using Corr2DBackpropFilterGpu = GpuKernel<T, kCorrBackpropFilter, LaunchCorrBpf>;
template <typename T> using MaxPoolGpu = GpuKernel<T, kPoolForward, LaunchMaxPool>;
template <typename T> using MaxPoolGradGpu = GpuKernel<T, kMaxPoolGrad, LaunchMaxPoolGrad>;
template <typename T> using MeanPoolGpu = GpuKernel<T, kPoolForward, LaunchMeanPool>;
template <typename T> using MeanPoolGradGpu = GpuKernel<T, kMeanPoolGrad, LaunchMeanPoolGrad>;

}  // namespace
}  // namespace kce

#define KCE_REGISTER_GPU(T)                                                                  \
  KCE_REGISTER_CORR2D(tensorflow::DEVICE_GPU, T, Corr2DGpu, Corr2DBackpropInputGpu,            \
                      Corr2DBackpropFilterGpu);                                                \
  KCE_REGISTER_MAX_POOL2D(tensorflow::DEVICE_GPU, T, MaxPoolGpu, MaxPoolGradGpu);              \
  KCE_REGISTER_MEAN_POOL2D(tensorflow::DEVICE_GPU, T, MeanPoolGpu, MeanPoolGradGpu);
KCE_CALL_TYPES(KCE_REGISTER_GPU)
#undef KCE_REGISTER_GPU

#endif  // GOOGLE_CUDA
