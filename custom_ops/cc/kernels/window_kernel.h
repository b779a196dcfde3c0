// Base of every kernel (CPU and GPU): attributes read once at construction, input validation and
// geometry (CorrParams / PoolParams) from the input shapes, output allocation. The layout of the
// 4-D tensors goes through TensorFlow's tensor_format.h (GetTensorDim, ShapeFromFormat).
#ifndef KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_WINDOW_KERNEL_H_
#define KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_WINDOW_KERNEL_H_

#include <type_traits>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/platform/errors.h"
#include "tensorflow/core/util/tensor_format.h"
#include "kernels/corr2d_attrs.h"
#include "kernels/corr2d_functors.h"
#include "kernels/pool2d_functors.h"
#include "kernels/window_attrs.h"

namespace kce {

// Reads a 1-D int32 tensor of 4 non-negative sizes into a TensorShape.
inline absl::Status SizesToShape(const tensorflow::Tensor& t, const char* name,
                                 tensorflow::TensorShape* out) {
  if (t.dims() != 1 || t.NumElements() != 4)
    return tensorflow::errors::InvalidArgument("`", name, "` must be a vector of 4 sizes, got shape ",
                                               t.shape().DebugString());
  auto v = t.flat<int32_t>();
  tensorflow::TensorShape s;
  for (int i = 0; i < 4; ++i) {
    if (v(i) < 0)
      return tensorflow::errors::InvalidArgument("`", name, "` has a negative entry ", v(i));
    TF_RETURN_IF_ERROR(s.AddDimWithStatus(v(i)));
  }
  *out = s;
  return absl::OkStatus();
}

// The part of the geometry both op families share: input sizes in the attribute's layout, strides,
// padding, padding mode, and the output size of each spatial axis for window (kh, kw).
template <typename P>
absl::Status FillWindow(const WindowAttrs& a, const tensorflow::TensorShape& xs, i64 kh, i64 kw,
                        bool pooling, P* p) {
  if (xs.dims() != 4)
    return tensorflow::errors::InvalidArgument("Input must be 4-D, got shape ", xs.DebugString());
  p->N = tensorflow::GetTensorDim(xs, a.format, 'N');
  p->H = tensorflow::GetTensorDim(xs, a.format, 'H');
  p->W = tensorflow::GetTensorDim(xs, a.format, 'W');
  p->C = tensorflow::GetTensorDim(xs, a.format, 'C');
  p->KH = kh; p->KW = kw;
  p->sh = a.sh; p->sw = a.sw; p->pt = a.pt; p->pb = a.pb; p->pl = a.pl; p->pr = a.pr;
  p->mode = a.mode;
  const bool ceil_mode = pooling && a.ceil_mode;
  TF_RETURN_IF_ERROR(
      AxisOutput(p->H, kh, p->sh, p->pt, p->pb, p->mode, pooling, "height", &p->OH, ceil_mode));
  TF_RETURN_IF_ERROR(
      AxisOutput(p->W, kw, p->sw, p->pl, p->pr, p->mode, pooling, "width", &p->OW, ceil_mode));
  p->xl = MakeLayout(a.channels_last(), p->H, p->W, p->C);
  return absl::OkStatus();
}

inline absl::Status MakeCorrParams(const WindowAttrs& a, const tensorflow::TensorShape& xs,
                                   const tensorflow::TensorShape& ks, CorrParams* p,
                                   tensorflow::TensorShape* ys) {
  if (ks.dims() != 4)
    return tensorflow::errors::InvalidArgument("Kernel must be 4-D (M, N, C_in, C_out), got shape ",
                                               ks.DebugString());
  if (xs.dims() != 4)
    return tensorflow::errors::InvalidArgument("Input must be 4-D, got shape ", xs.DebugString());
  // The window of the shared geometry is the dilated kernel's extent (corr2d_attrs.h).
  const i64 kh = ks.dim_size(0), kw = ks.dim_size(1);
  TF_RETURN_IF_ERROR(CheckDilatedAxis(tensorflow::GetTensorDim(xs, a.format, 'H'), kh, a.dh, a.pt,
                                      a.pb, "height"));
  TF_RETURN_IF_ERROR(CheckDilatedAxis(tensorflow::GetTensorDim(xs, a.format, 'W'), kw, a.dw, a.pl,
                                      a.pr, "width"));
  TF_RETURN_IF_ERROR(FillWindow(a, xs, DilatedExtent(kh, a.dh), DilatedExtent(kw, a.dw), false, p));
  p->KH = kh; p->KW = kw;
  p->F = ks.dim_size(3);
  TF_RETURN_IF_ERROR(CheckCorrGroups(a.groups, p->C, ks.dim_size(2), p->F));
  p->dh = a.dh; p->dw = a.dw;
  p->G = a.groups; p->Cg = p->C / a.groups; p->Fg = p->F / a.groups;
  p->flip = a.flip;
  p->yl = MakeLayout(a.channels_last(), p->OH, p->OW, p->F);
  return tensorflow::ShapeFromFormatWithStatus(a.format, p->N, p->OH, p->OW, p->F, ys);
}

inline absl::Status MakePoolParams(const WindowAttrs& a, const tensorflow::TensorShape& xs,
                                   PoolParams* p, tensorflow::TensorShape* ys) {
  TF_RETURN_IF_ERROR(FillWindow(a, xs, a.kh, a.kw, true, p));
  p->yl = MakeLayout(a.channels_last(), p->OH, p->OW, p->C);
  return tensorflow::ShapeFromFormatWithStatus(a.format, p->N, p->OH, p->OW, p->C, ys);
}

// Which op a kernel computes, by its inputs -> output.
enum OpKind : int {
  kCorrForward,         // (x, w) -> y
  kCorrBackpropInput,   // (input_sizes, w, dy) -> dx
  kCorrBackpropFilter,  // (x, filter_sizes, dy) -> dw
  kPoolForward,         // (x) -> y
  kMaxPoolGrad,         // (x, dy) -> dx
  kMeanPoolGrad,        // (input_sizes, dy) -> dx
};

inline absl::Status CheckDy(const tensorflow::Tensor& dy, const tensorflow::TensorShape& ys) {
  if (dy.shape() == ys) return absl::OkStatus();
  return tensorflow::errors::InvalidArgument("`dy` must have shape ", ys.DebugString(), ", got ",
                                             dy.shape().DebugString());
}

inline absl::Status CheckSize(const tensorflow::TensorShape& s) {
  if (s.num_elements() > kMaxAttr)
    return tensorflow::errors::InvalidArgument("Tensor of shape ", s.DebugString(),
                                               " exceeds the 2^31-1 element limit of the ops");
  return absl::OkStatus();
}

// Base of every kernel (CPU and GPU): reads the attributes at construction; Prepare() validates the
// inputs of op `Kind`, fills the geometry and the output shape `ys` of the forward op, and allocates
// the output. kCheckSize: reject outputs over 2^31-1 elements (the CPU kernels; the max-pool
// gradient's output has the shape of an input and is not checked).
template <OpKind Kind, bool kCheckSize>
class WindowKernel : public tensorflow::OpKernel {
 public:
  static constexpr bool kPool = Kind >= kPoolForward;
  typedef typename std::conditional<kPool, PoolParams, CorrParams>::type Params;

  explicit WindowKernel(tensorflow::OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadWindowAttrs(ctx, kPool, &attrs_));
  }

 protected:
  absl::Status Prepare(tensorflow::OpKernelContext* ctx, Params* p, tensorflow::TensorShape* ys,
                       tensorflow::Tensor** out) const {
    tensorflow::TensorShape xs, ks, os;
    const bool sizes_first = Kind == kCorrBackpropInput || Kind == kMeanPoolGrad;
    if (sizes_first) {
      TF_RETURN_IF_ERROR(SizesToShape(ctx->input(0), "input_sizes", &xs));
    } else {
      xs = ctx->input(0).shape();
    }
    if constexpr (kPool) {
      TF_RETURN_IF_ERROR(MakePoolParams(attrs_, xs, p, ys));
    } else {
      if (Kind == kCorrBackpropFilter) {
        TF_RETURN_IF_ERROR(SizesToShape(ctx->input(1), "filter_sizes", &ks));
      } else {
        ks = ctx->input(1).shape();
      }
      TF_RETURN_IF_ERROR(MakeCorrParams(attrs_, xs, ks, p, ys));
    }
    if (Kind != kCorrForward && Kind != kPoolForward)
      TF_RETURN_IF_ERROR(CheckDy(ctx->input(ctx->num_inputs() - 1), *ys));
    os = (Kind == kCorrForward || Kind == kPoolForward) ? *ys
         : Kind == kCorrBackpropFilter                  ? ks
                                                        : xs;
    if (kCheckSize && Kind != kMaxPoolGrad) TF_RETURN_IF_ERROR(CheckSize(os));
    return ctx->allocate_output(0, os, out);
  }

  // The data of the op's tensor inputs in order, without the size vector (host memory, read by
  // Prepare): in[1] is null for single-input ops.
  template <typename T>
  static void TensorInputs(tensorflow::OpKernelContext* ctx, const T* in[2]) {
    constexpr int kSizes = (Kind == kCorrBackpropInput || Kind == kMeanPoolGrad) ? 0
                           : Kind == kCorrBackpropFilter                        ? 1
                                                                                : -1;
    in[0] = in[1] = nullptr;
    for (int i = 0, k = 0; i < ctx->num_inputs(); ++i)
      if (i != kSizes) in[k++] = ctx->input(i).flat<T>().data();
  }

  WindowAttrs attrs_;
};

}  // namespace kce

// Kernel registrations of one op family for one device and element type T; the KERNEL arguments
// name class templates of namespace kce, instantiated with T. Used with TensorFlow's TF_CALL_half /
// TF_CALL_bfloat16 / TF_CALL_float / TF_CALL_double (KCE_CALL_TYPES) by every kernel file.
#define KCE_REGISTER_KERNEL(NAME, DEVICE, T, KERNEL) \
  REGISTER_KERNEL_BUILDER(Name(NAME).Device(DEVICE).TypeConstraint<T>("T"), kce::KERNEL<T>)
#define KCE_REGISTER_KERNEL_HOST(NAME, DEVICE, T, HOST, KERNEL) \
  REGISTER_KERNEL_BUILDER(                                      \
      Name(NAME).Device(DEVICE).TypeConstraint<T>("T").HostMemory(HOST), kce::KERNEL<T>)

#define KCE_REGISTER_CORR2D(DEVICE, T, FORWARD, BACKPROP_INPUT, BACKPROP_FILTER)                 \
  KCE_REGISTER_KERNEL("KerasCnnExt>Corr2D", DEVICE, T, FORWARD);                                 \
  KCE_REGISTER_KERNEL_HOST("KerasCnnExt>Corr2DBackpropInput", DEVICE, T, "input_sizes",          \
                           BACKPROP_INPUT);                                                      \
  KCE_REGISTER_KERNEL_HOST("KerasCnnExt>Corr2DBackpropFilter", DEVICE, T, "filter_sizes",        \
                           BACKPROP_FILTER)
#define KCE_REGISTER_MAX_POOL2D(DEVICE, T, FORWARD, GRAD)            \
  KCE_REGISTER_KERNEL("KerasCnnExt>MaxPool2D", DEVICE, T, FORWARD); \
  KCE_REGISTER_KERNEL("KerasCnnExt>MaxPool2DGrad", DEVICE, T, GRAD)
#define KCE_REGISTER_MEAN_POOL2D(DEVICE, T, FORWARD, GRAD)            \
  KCE_REGISTER_KERNEL("KerasCnnExt>MeanPool2D", DEVICE, T, FORWARD); \
  KCE_REGISTER_KERNEL_HOST("KerasCnnExt>MeanPool2DGrad", DEVICE, T, "input_sizes", GRAD)

// The element types of every op (half, bfloat16, float, double).
#define KCE_CALL_TYPES(m) TF_CALL_half(m) TF_CALL_bfloat16(m) TF_CALL_float(m) TF_CALL_double(m)

#endif  // KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_WINDOW_KERNEL_H_
