// Attribute and geometry validation shared by the op registrations (shape functions) and the
// kernels, so both reject exactly the same inputs with InvalidArgument.
#ifndef KERAS_CNN_EXT_CUSTOM_OPS_KCE_COMMON_H_
#define KERAS_CNN_EXT_CUSTOM_OPS_KCE_COMMON_H_

#include <string>
#include <type_traits>
#include <vector>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/platform/errors.h"
#include "kce_functors.h"

namespace kce {

constexpr i64 kMaxAttr = (i64{1} << 31) - 1;

struct WindowAttrs {
  i64 kh = 0, kw = 0;        // pooling window (unused by the correlation ops)
  i64 sh = 1, sw = 1;
  i64 pt = 0, pb = 0, pl = 0, pr = 0;
  int mode = kZeros;
  bool flip = false;
  bool channels_last = true;
};

inline int ParsePadMode(const std::string& s) {
  if (s == "replicate") return kReplicate;
  if (s == "reflect") return kReflect;
  if (s == "ignore") return kIgnore;
  return kZeros;
}

inline absl::Status CheckList(const std::vector<int64_t>& v, size_t n, i64 lo, const char* name) {
  if (v.size() != n)
    return tensorflow::errors::InvalidArgument("Attribute `", name, "` must have ", n,
                                               " entries, got ", v.size());
  for (auto e : v)
    if (e < lo || e > kMaxAttr)
      return tensorflow::errors::InvalidArgument("Attribute `", name, "` entries must be in [",
                                                 lo, ", ", kMaxAttr, "], got ", e);
  return absl::OkStatus();
}

// Validates the list attributes; `ksize` is empty for the correlation ops.
inline absl::Status MakeWindowAttrs(const std::vector<int64_t>& ksize,
                                    const std::vector<int64_t>& strides,
                                    const std::vector<int64_t>& pads, const std::string& padding_mode,
                                    const std::string& mode, const std::string& data_format,
                                    bool pooling, WindowAttrs* a) {
  TF_RETURN_IF_ERROR(CheckList(strides, 2, 1, "strides"));
  TF_RETURN_IF_ERROR(CheckList(pads, 4, 0, "pads"));
  a->sh = strides[0]; a->sw = strides[1];
  a->pt = pads[0]; a->pb = pads[1]; a->pl = pads[2]; a->pr = pads[3];
  a->mode = ParsePadMode(padding_mode);
  a->flip = (mode == "convolution");
  a->channels_last = (data_format != "NCHW");
  if (pooling) {
    TF_RETURN_IF_ERROR(CheckList(ksize, 2, 1, "ksize"));
    a->kh = ksize[0]; a->kw = ksize[1];
    if (a->pt >= a->kh || a->pb >= a->kh || a->pl >= a->kw || a->pr >= a->kw)
      return tensorflow::errors::InvalidArgument(
          "Each side of the pooling padding must be smaller than the pooling window: pads=[",
          a->pt, ", ", a->pb, ", ", a->pl, ", ", a->pr, "], ksize=[", a->kh, ", ", a->kw, "]");
  }
  return absl::OkStatus();
}

// One spatial axis: output size of a window k, stride s, padding (before, after) over `in` cells.
inline absl::Status AxisOutput(i64 in, i64 k, i64 s, i64 before, i64 after, int mode, bool pooling,
                               const char* axis, i64* out) {
  if (in < 0) return tensorflow::errors::InvalidArgument("Negative ", axis, " size ", in);
  if (k < 1 || k > kMaxAttr)
    return tensorflow::errors::InvalidArgument("Window ", axis, " size must be in [1, ", kMaxAttr,
                                               "], got ", k);
  if (pooling && in < 1)
    return tensorflow::errors::InvalidArgument("Pooling needs a non-empty input ", axis,
                                               " axis, got size ", in);
  if (mode == kReflect && (before >= in || after >= in) && (before > 0 || after > 0))
    return tensorflow::errors::InvalidArgument(
        "Reflect padding needs each side smaller than the input size along ", axis, ": input ",
        in, ", padding (", before, ", ", after, ")");
  if (mode == kReplicate && in < 1 && (before > 0 || after > 0))
    return tensorflow::errors::InvalidArgument("Replicate padding of an empty ", axis, " axis");
  const i64 padded = in + before + after;
  if (padded < k)
    return tensorflow::errors::InvalidArgument(
        "The window does not fit into the padded input along ", axis, ": input ", in,
        ", padding (", before, ", ", after, "), window ", k, ", stride ", s);
  *out = (padded - k) / s + 1;
  return absl::OkStatus();
}


// ---- kernel-side helpers: geometry from tensors ---------------------------------------------

inline void SplitShape(const tensorflow::TensorShape& s, bool cl, i64* n, i64* h, i64* w, i64* c) {
  *n = s.dim_size(0);
  *h = s.dim_size(cl ? 1 : 2);
  *w = s.dim_size(cl ? 2 : 3);
  *c = s.dim_size(cl ? 3 : 1);
}

inline tensorflow::TensorShape JoinShape(bool cl, i64 n, i64 h, i64 w, i64 c) {
  return cl ? tensorflow::TensorShape({n, h, w, c}) : tensorflow::TensorShape({n, c, h, w});
}

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

inline absl::Status MakeCorrParams(const WindowAttrs& a, const tensorflow::TensorShape& xs,
                                   const tensorflow::TensorShape& ks, CorrParams* p,
                                   tensorflow::TensorShape* ys) {
  if (xs.dims() != 4)
    return tensorflow::errors::InvalidArgument("Input must be 4-D, got shape ", xs.DebugString());
  if (ks.dims() != 4)
    return tensorflow::errors::InvalidArgument("Kernel must be 4-D (M, N, C_in, C_out), got shape ",
                                               ks.DebugString());
  SplitShape(xs, a.channels_last, &p->N, &p->H, &p->W, &p->C);
  p->KH = ks.dim_size(0); p->KW = ks.dim_size(1); p->F = ks.dim_size(3);
  if (ks.dim_size(2) != p->C)
    return tensorflow::errors::InvalidArgument("Kernel input channels ", ks.dim_size(2),
                                               " do not match the input channels ", p->C);
  p->sh = a.sh; p->sw = a.sw; p->pt = a.pt; p->pb = a.pb; p->pl = a.pl; p->pr = a.pr;
  p->mode = a.mode; p->flip = a.flip;
  TF_RETURN_IF_ERROR(AxisOutput(p->H, p->KH, p->sh, p->pt, p->pb, p->mode, false, "height", &p->OH));
  TF_RETURN_IF_ERROR(AxisOutput(p->W, p->KW, p->sw, p->pl, p->pr, p->mode, false, "width", &p->OW));
  p->xl = MakeLayout(a.channels_last, p->H, p->W, p->C);
  p->yl = MakeLayout(a.channels_last, p->OH, p->OW, p->F);
  tensorflow::TensorShape y;
  TF_RETURN_IF_ERROR(tensorflow::TensorShape::BuildTensorShape(
      a.channels_last ? std::vector<int64_t>{p->N, p->OH, p->OW, p->F}
                      : std::vector<int64_t>{p->N, p->F, p->OH, p->OW}, &y));
  *ys = y;
  return absl::OkStatus();
}

inline absl::Status MakePoolParams(const WindowAttrs& a, const tensorflow::TensorShape& xs,
                                   PoolParams* p, tensorflow::TensorShape* ys) {
  if (xs.dims() != 4)
    return tensorflow::errors::InvalidArgument("Input must be 4-D, got shape ", xs.DebugString());
  SplitShape(xs, a.channels_last, &p->N, &p->H, &p->W, &p->C);
  p->KH = a.kh; p->KW = a.kw;
  p->sh = a.sh; p->sw = a.sw; p->pt = a.pt; p->pb = a.pb; p->pl = a.pl; p->pr = a.pr;
  p->mode = a.mode;
  TF_RETURN_IF_ERROR(AxisOutput(p->H, p->KH, p->sh, p->pt, p->pb, p->mode, true, "height", &p->OH));
  TF_RETURN_IF_ERROR(AxisOutput(p->W, p->KW, p->sw, p->pl, p->pr, p->mode, true, "width", &p->OW));
  p->xl = MakeLayout(a.channels_last, p->H, p->W, p->C);
  p->yl = MakeLayout(a.channels_last, p->OH, p->OW, p->C);
  tensorflow::TensorShape y;
  TF_RETURN_IF_ERROR(tensorflow::TensorShape::BuildTensorShape(
      a.channels_last ? std::vector<int64_t>{p->N, p->OH, p->OW, p->C}
                      : std::vector<int64_t>{p->N, p->C, p->OH, p->OW}, &y));
  *ys = y;
  return absl::OkStatus();
}

// Reads and validates the attributes of a kernel (constructor time).
inline absl::Status ReadKernelAttrs(tensorflow::OpKernelConstruction* ctx, bool pooling,
                                    WindowAttrs* a) {
  std::vector<int64_t> ksize, strides, pads;
  std::string padding_mode, mode = "cross_correlation", data_format;
  if (pooling) TF_RETURN_IF_ERROR(ctx->GetAttr("ksize", &ksize));
  TF_RETURN_IF_ERROR(ctx->GetAttr("strides", &strides));
  TF_RETURN_IF_ERROR(ctx->GetAttr("pads", &pads));
  TF_RETURN_IF_ERROR(ctx->GetAttr("padding_mode", &padding_mode));
  if (!pooling) TF_RETURN_IF_ERROR(ctx->GetAttr("mode", &mode));
  TF_RETURN_IF_ERROR(ctx->GetAttr("data_format", &data_format));
  return MakeWindowAttrs(ksize, strides, pads, padding_mode, mode, data_format, pooling, a);
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
    OP_REQUIRES_OK(ctx, ReadKernelAttrs(ctx, kPool, &attrs_));
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

  WindowAttrs attrs_;
};

}  // namespace kce

// Registers the seven kernels of one device and type T; the arguments name class templates of
// namespace kce, instantiated with T.
#define KCE_REGISTER_KERNEL(NAME, DEVICE, T, KERNEL) \
  REGISTER_KERNEL_BUILDER(Name(NAME).Device(DEVICE).TypeConstraint<T>("T"), kce::KERNEL<T>)
#define KCE_REGISTER_KERNEL_HOST(NAME, DEVICE, T, HOST, KERNEL) \
  REGISTER_KERNEL_BUILDER(                                      \
      Name(NAME).Device(DEVICE).TypeConstraint<T>("T").HostMemory(HOST), kce::KERNEL<T>)
#define KCE_REGISTER_ALL(DEVICE, T, CORR, CORR_BPI, CORR_BPF, MAXPOOL, MAXPOOL_GRAD, MEANPOOL,    \
                         MEANPOOL_GRAD)                                                          \
  KCE_REGISTER_KERNEL("KerasCnnExt>Corr2D", DEVICE, T, CORR);                                    \
  KCE_REGISTER_KERNEL_HOST("KerasCnnExt>Corr2DBackpropInput", DEVICE, T, "input_sizes",          \
                           CORR_BPI);                                                            \
  KCE_REGISTER_KERNEL_HOST("KerasCnnExt>Corr2DBackpropFilter", DEVICE, T, "filter_sizes",        \
                           CORR_BPF);                                                            \
  KCE_REGISTER_KERNEL("KerasCnnExt>MaxPool2D", DEVICE, T, MAXPOOL);                              \
  KCE_REGISTER_KERNEL("KerasCnnExt>MaxPool2DGrad", DEVICE, T, MAXPOOL_GRAD);                     \
  KCE_REGISTER_KERNEL("KerasCnnExt>MeanPool2D", DEVICE, T, MEANPOOL);                            \
  KCE_REGISTER_KERNEL_HOST("KerasCnnExt>MeanPool2DGrad", DEVICE, T, "input_sizes", MEANPOOL_GRAD)

#endif  // KERAS_CNN_EXT_CUSTOM_OPS_KCE_COMMON_H_
