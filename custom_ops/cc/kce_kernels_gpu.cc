// TensorFlow GPU kernels of keras_cnn_ext's custom ops: a thin wrapper that validates the inputs
// exactly like the CPU kernels (kce_common.h), allocates the outputs and calls the plain-CUDA
// launchers of kce_kernels_gpu.cu.cc on the op's stream. Compiled only when TensorFlow is built with
// CUDA and nvcc is found (build_native.py), with -DGOOGLE_CUDA=1.
#if GOOGLE_CUDA

#define EIGEN_USE_GPU

#include <type_traits>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "unsupported/Eigen/CXX11/Tensor"
#include "kce_common.h"
#include "kce_gpu_launch.h"

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

absl::Status CheckDy(const Tensor& dy, const TensorShape& ys) {
  if (dy.shape() == ys) return absl::OkStatus();
  return tensorflow::errors::InvalidArgument("`dy` must have shape ", ys.DebugString(), ", got ",
                                             dy.shape().DebugString());
}

template <typename T>
class Corr2DGpu : public OpKernel {
 public:
  explicit Corr2DGpu(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadKernelAttrs(ctx, false, &a_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& w = ctx->input(1);
    CorrParams p;
    TensorShape ys;
    OP_REQUIRES_OK(ctx, MakeCorrParams(a_, x.shape(), w.shape(), &p, &ys));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ys, &y));
    if (ys.num_elements() == 0) return;
    OP_REQUIRES_OK(ctx, Check(gpu::CorrForward(Stream(ctx), Tag<T>::value, p, x.flat<T>().data(),
                                               w.flat<T>().data(), y->flat<T>().data())));
  }

 private:
  WindowAttrs a_;
};

template <typename T>
class Corr2DBackpropInputGpu : public OpKernel {
 public:
  explicit Corr2DBackpropInputGpu(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadKernelAttrs(ctx, false, &a_));
  }
  void Compute(OpKernelContext* ctx) override {
    TensorShape xs, ys;
    OP_REQUIRES_OK(ctx, SizesToShape(ctx->input(0), "input_sizes", &xs));
    const Tensor& w = ctx->input(1);
    const Tensor& dy = ctx->input(2);
    CorrParams p;
    OP_REQUIRES_OK(ctx, MakeCorrParams(a_, xs, w.shape(), &p, &ys));
    OP_REQUIRES_OK(ctx, CheckDy(dy, ys));
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, xs, &dx));
    if (xs.num_elements() == 0) return;
    OP_REQUIRES_OK(ctx, Check(gpu::CorrBackpropInput(Stream(ctx), Tag<T>::value, p,
                                                     w.flat<T>().data(), dy.flat<T>().data(),
                                                     dx->flat<T>().data())));
  }

 private:
  WindowAttrs a_;
};

template <typename T>
class Corr2DBackpropFilterGpu : public OpKernel {
 public:
  explicit Corr2DBackpropFilterGpu(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadKernelAttrs(ctx, false, &a_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    TensorShape ks, ys;
    OP_REQUIRES_OK(ctx, SizesToShape(ctx->input(1), "filter_sizes", &ks));
    const Tensor& dy = ctx->input(2);
    CorrParams p;
    OP_REQUIRES_OK(ctx, MakeCorrParams(a_, x.shape(), ks, &p, &ys));
    OP_REQUIRES_OK(ctx, CheckDy(dy, ys));
    Tensor* dw = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ks, &dw));
    if (ks.num_elements() == 0) return;
    OP_REQUIRES_OK(ctx, Check(gpu::CorrBackpropFilter(Stream(ctx), Tag<T>::value, p,
                                                      x.flat<T>().data(), dy.flat<T>().data(),
                                                      dw->flat<T>().data())));
  }

 private:
  WindowAttrs a_;
};

template <typename T, bool kMax>
class PoolGpu : public OpKernel {
 public:
  explicit PoolGpu(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadKernelAttrs(ctx, true, &a_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    PoolParams p;
    TensorShape ys;
    OP_REQUIRES_OK(ctx, MakePoolParams(a_, x.shape(), &p, &ys));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ys, &y));
    if (ys.num_elements() == 0) return;
    const int err = kMax ? gpu::MaxPoolForward(Stream(ctx), Tag<T>::value, p, x.flat<T>().data(),
                                               y->flat<T>().data())
                         : gpu::MeanPoolForward(Stream(ctx), Tag<T>::value, p, x.flat<T>().data(),
                                                y->flat<T>().data());
    OP_REQUIRES_OK(ctx, Check(err));
  }

 private:
  WindowAttrs a_;
};

template <typename T>
class MaxPoolGradGpu : public OpKernel {
 public:
  explicit MaxPoolGradGpu(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadKernelAttrs(ctx, true, &a_));
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& dy = ctx->input(1);
    PoolParams p;
    TensorShape ys;
    OP_REQUIRES_OK(ctx, MakePoolParams(a_, x.shape(), &p, &ys));
    OP_REQUIRES_OK(ctx, CheckDy(dy, ys));
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &dx));
    if (x.NumElements() == 0) return;
    OP_REQUIRES_OK(ctx, Check(gpu::MaxPoolGrad(Stream(ctx), Tag<T>::value, p, x.flat<T>().data(),
                                               dy.flat<T>().data(), dx->flat<T>().data())));
  }

 private:
  WindowAttrs a_;
};

template <typename T>
class MeanPoolGradGpu : public OpKernel {
 public:
  explicit MeanPoolGradGpu(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadKernelAttrs(ctx, true, &a_));
  }
  void Compute(OpKernelContext* ctx) override {
    TensorShape xs, ys;
    OP_REQUIRES_OK(ctx, SizesToShape(ctx->input(0), "input_sizes", &xs));
    const Tensor& dy = ctx->input(1);
    PoolParams p;
    OP_REQUIRES_OK(ctx, MakePoolParams(a_, xs, &p, &ys));
    OP_REQUIRES_OK(ctx, CheckDy(dy, ys));
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, xs, &dx));
    if (xs.num_elements() == 0) return;
    OP_REQUIRES_OK(ctx, Check(gpu::MeanPoolGrad(Stream(ctx), Tag<T>::value, p,
                                                dy.flat<T>().data(), dx->flat<T>().data())));
  }

 private:
  WindowAttrs a_;
};

}  // namespace
}  // namespace kce

#define KCE_REGISTER_GPU(T)                                                                     \
  REGISTER_KERNEL_BUILDER(                                                                      \
      Name("KerasCnnExt>Corr2D").Device(tensorflow::DEVICE_GPU).TypeConstraint<T>("T"),        \
      kce::Corr2DGpu<T>);                                                                       \
  REGISTER_KERNEL_BUILDER(Name("KerasCnnExt>Corr2DBackpropInput")                               \
                              .Device(tensorflow::DEVICE_GPU)                                   \
                              .TypeConstraint<T>("T")                                           \
                              .HostMemory("input_sizes"),                                       \
                          kce::Corr2DBackpropInputGpu<T>);                                      \
  REGISTER_KERNEL_BUILDER(Name("KerasCnnExt>Corr2DBackpropFilter")                              \
                              .Device(tensorflow::DEVICE_GPU)                                   \
                              .TypeConstraint<T>("T")                                           \
                              .HostMemory("filter_sizes"),                                      \
                          kce::Corr2DBackpropFilterGpu<T>);                                     \
  REGISTER_KERNEL_BUILDER(                                                                      \
      Name("KerasCnnExt>MaxPool2D").Device(tensorflow::DEVICE_GPU).TypeConstraint<T>("T"),     \
      kce::PoolGpu<T, true>);                                                                   \
  REGISTER_KERNEL_BUILDER(                                                                      \
      Name("KerasCnnExt>MaxPool2DGrad").Device(tensorflow::DEVICE_GPU).TypeConstraint<T>("T"), \
      kce::MaxPoolGradGpu<T>);                                                                  \
  REGISTER_KERNEL_BUILDER(                                                                      \
      Name("KerasCnnExt>MeanPool2D").Device(tensorflow::DEVICE_GPU).TypeConstraint<T>("T"),    \
      kce::PoolGpu<T, false>);                                                                  \
  REGISTER_KERNEL_BUILDER(Name("KerasCnnExt>MeanPool2DGrad")                                    \
                              .Device(tensorflow::DEVICE_GPU)                                   \
                              .TypeConstraint<T>("T")                                           \
                              .HostMemory("input_sizes"),                                       \
                          kce::MeanPoolGradGpu<T>);

KCE_REGISTER_GPU(Eigen::half);
KCE_REGISTER_GPU(tensorflow::bfloat16);
KCE_REGISTER_GPU(float);
KCE_REGISTER_GPU(double);

#endif  // GOOGLE_CUDA
