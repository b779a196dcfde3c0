// Attribute and geometry validation shared by the op registrations (shape functions, ops/*.cc) and
// the kernels (kernels/*.cc), so both reject exactly the same inputs with InvalidArgument.
#ifndef KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_WINDOW_ATTRS_H_
#define KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_WINDOW_ATTRS_H_

#include <string>
#include <vector>

#include "tensorflow/core/platform/errors.h"
#include "tensorflow/core/util/tensor_format.h"
#include "kernels/window_functors.h"

namespace kce {

constexpr i64 kMaxAttr = (i64{1} << 31) - 1;

struct WindowAttrs {
  i64 kh = 0, kw = 0;        // pooling window (unused by the correlation ops)
  i64 sh = 1, sw = 1;
  i64 pt = 0, pb = 0, pl = 0, pr = 0;
  int mode = kZeros;
  bool flip = false;
  i64 dh = 1, dw = 1, groups = 1;  // kernel dilation and channel groups (correlation only)
  tensorflow::TensorFormat format = tensorflow::FORMAT_NHWC;
  bool ceil_mode = false;    // pooling: PyTorch's ceil_mode output rounding
  bool channels_last() const { return format == tensorflow::FORMAT_NHWC; }
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

// The correlation ops' `dilations` (two entries >= 1) and `groups` (>= 1); their relation to the
// shapes is checked by CheckCorrGroups / CorrAxisCheck (corr2d_functors.h).
template <typename Ctx>
absl::Status ReadCorrGeometryAttrs(Ctx* ctx, WindowAttrs* a) {
  std::vector<int64_t> dilations;
  int64_t groups = 1;
  TF_RETURN_IF_ERROR(ctx->GetAttr("dilations", &dilations));
  TF_RETURN_IF_ERROR(ctx->GetAttr("groups", &groups));
  TF_RETURN_IF_ERROR(CheckList(dilations, 2, 1, "dilations"));
  if (groups < 1 || groups > kMaxAttr)
    return tensorflow::errors::InvalidArgument("Attribute `groups` must be in [1, ", kMaxAttr,
                                               "], got groups=", groups);
  a->dh = dilations[0]; a->dw = dilations[1]; a->groups = groups;
  return absl::OkStatus();
}

// Reads and validates the attributes of a kernel (OpKernelConstruction) or of a shape function
// (InferenceContext): both have GetAttr(name, &value). `ksize` and `mode` exist only for pooling
// and correlation respectively.
template <typename Ctx>
absl::Status ReadWindowAttrs(Ctx* ctx, bool pooling, WindowAttrs* a) {
  std::vector<int64_t> ksize, strides, pads;
  std::string padding_mode, mode = "cross_correlation", data_format;
  if (pooling) TF_RETURN_IF_ERROR(ctx->GetAttr("ksize", &ksize));
  TF_RETURN_IF_ERROR(ctx->GetAttr("strides", &strides));
  TF_RETURN_IF_ERROR(ctx->GetAttr("pads", &pads));
  TF_RETURN_IF_ERROR(ctx->GetAttr("padding_mode", &padding_mode));
  if (!pooling) TF_RETURN_IF_ERROR(ctx->GetAttr("mode", &mode));
  TF_RETURN_IF_ERROR(ctx->GetAttr("data_format", &data_format));
  TF_RETURN_IF_ERROR(CheckList(strides, 2, 1, "strides"));
  TF_RETURN_IF_ERROR(CheckList(pads, 4, 0, "pads"));
  if (!tensorflow::FormatFromString(data_format, &a->format) ||
      (a->format != tensorflow::FORMAT_NHWC && a->format != tensorflow::FORMAT_NCHW))
    return tensorflow::errors::InvalidArgument("Attribute `data_format` must be NHWC or NCHW, got ",
                                               data_format);
  a->sh = strides[0]; a->sw = strides[1];
  a->pt = pads[0]; a->pb = pads[1]; a->pl = pads[2]; a->pr = pads[3];
  a->mode = ParsePadMode(padding_mode);
  a->flip = (mode == "convolution");
  if (!pooling) TF_RETURN_IF_ERROR(ReadCorrGeometryAttrs(ctx, a));
  if (pooling) {
    TF_RETURN_IF_ERROR(CheckList(ksize, 2, 1, "ksize"));
    a->kh = ksize[0]; a->kw = ksize[1];
    TF_RETURN_IF_ERROR(ctx->GetAttr("ceil_mode", &a->ceil_mode));
    if (a->pt >= a->kh || a->pb >= a->kh || a->pl >= a->kw || a->pr >= a->kw)
      return tensorflow::errors::InvalidArgument(
          "Each side of the pooling padding must be smaller than the pooling window: pads=[",
          a->pt, ", ", a->pb, ", ", a->pl, ", ", a->pr, "], ksize=[", a->kh, ", ", a->kw, "]");
  }
  return absl::OkStatus();
}

// One spatial axis: output size of a window k, stride s, padding (before, after) over `in` cells.
// ceil_mode (pooling): PyTorch's rounding, ceil((padded - k) / s) + 1, less a last window that
// would start in the `after` padding; its cells beyond the padded input take no part.
inline absl::Status AxisOutput(i64 in, i64 k, i64 s, i64 before, i64 after, int mode, bool pooling,
                               const char* axis, i64* out, bool ceil_mode = false) {
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
  if (ceil_mode) {
    *out = (padded - k + s - 1) / s + 1;
    if ((*out - 1) * s >= in + before) --*out;
  }
  return absl::OkStatus();
}

}  // namespace kce

#endif  // KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_WINDOW_ATTRS_H_
