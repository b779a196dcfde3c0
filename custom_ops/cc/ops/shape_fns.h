// Shape-function helpers shared by the op registrations (corr2d_ops.cc, pool2d_ops.cc): they apply
// the kernels' own validation (kernels/window_attrs.h) to the sizes known at graph-construction
// time, so a bad combination fails there with the same message it would fail with at run time.
#ifndef KERAS_CNN_EXT_CUSTOM_OPS_OPS_SHAPE_FNS_H_
#define KERAS_CNN_EXT_CUSTOM_OPS_OPS_SHAPE_FNS_H_

#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/tensor_format.h"
#include "kernels/window_attrs.h"

namespace kce {

// Dimension `dim` ('N', 'H', 'W' or 'C') of rank-4 shape s in the attribute's layout.
inline tensorflow::shape_inference::DimensionHandle FormatDim(
    tensorflow::shape_inference::InferenceContext* c, tensorflow::shape_inference::ShapeHandle s,
    const WindowAttrs& a, char dim) {
  return c->Dim(s, tensorflow::GetTensorDimIndex(a.format, dim));
}

// Output size of one spatial axis; unknown when the input size or the window is unknown.
inline absl::Status OutDim(tensorflow::shape_inference::InferenceContext* c,
                           tensorflow::shape_inference::DimensionHandle in,
                           tensorflow::shape_inference::DimensionHandle k, i64 s, i64 before,
                           i64 after, int mode, bool pooling, const char* axis,
                           tensorflow::shape_inference::DimensionHandle* out,
                           bool ceil_mode = false) {
  if (!c->ValueKnown(in) || !c->ValueKnown(k)) {
    *out = c->UnknownDim();
    return absl::OkStatus();
  }
  i64 o = 0;
  TF_RETURN_IF_ERROR(
      AxisOutput(c->Value(in), c->Value(k), s, before, after, mode, pooling, axis, &o, ceil_mode));
  *out = c->MakeDim(o);
  return absl::OkStatus();
}

// Output shape (n, out_h, out_w, channels) in the attribute's layout for input x and window
// (kh, kw).
inline absl::Status WindowOutput(tensorflow::shape_inference::InferenceContext* c,
                                 const WindowAttrs& a, bool pooling,
                                 tensorflow::shape_inference::ShapeHandle x,
                                 tensorflow::shape_inference::DimensionHandle kh,
                                 tensorflow::shape_inference::DimensionHandle kw,
                                 tensorflow::shape_inference::DimensionHandle channels,
                                 tensorflow::shape_inference::ShapeHandle* y) {
  tensorflow::shape_inference::DimensionHandle oh, ow;
  TF_RETURN_IF_ERROR(OutDim(c, FormatDim(c, x, a, 'H'), kh, a.sh, a.pt, a.pb, a.mode, pooling,
                            "height", &oh, pooling && a.ceil_mode));
  TF_RETURN_IF_ERROR(OutDim(c, FormatDim(c, x, a, 'W'), kw, a.sw, a.pl, a.pr, a.mode, pooling,
                            "width", &ow, pooling && a.ceil_mode));
  return tensorflow::shape_inference::MakeShapeFromFormat(a.format, FormatDim(c, x, a, 'N'),
                                                          {oh, ow}, channels, y, c);
}

// Reads input `index` as a rank-4 shape: the tensor's own shape, or (from_sizes) the value of a
// 1-D size vector.
inline absl::Status Rank4Input(tensorflow::shape_inference::InferenceContext* c, int index,
                               bool from_sizes, tensorflow::shape_inference::ShapeHandle* s) {
  if (from_sizes) {
    tensorflow::shape_inference::ShapeHandle sizes;
    TF_RETURN_IF_ERROR(c->WithRank(c->input(index), 1, &sizes));
    TF_RETURN_IF_ERROR(c->MakeShapeFromShapeTensor(index, s));
    return c->WithRank(*s, 4, s);
  }
  return c->WithRank(c->input(index), 4, s);
}

// The gradient ops' upstream gradient (input `index`) must have the forward op's output shape y.
inline absl::Status MergeDy(tensorflow::shape_inference::InferenceContext* c, int index,
                            tensorflow::shape_inference::ShapeHandle y) {
  tensorflow::shape_inference::ShapeHandle dy;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(index), 4, &dy));
  return c->Merge(y, dy, &y);
}

}  // namespace kce

#endif  // KERAS_CNN_EXT_CUSTOM_OPS_OPS_SHAPE_FNS_H_
