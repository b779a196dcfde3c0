// Op registrations of keras_cnn_ext's custom ops, with shape functions that validate the attributes
// and the input ranks / known sizes exactly like the kernels do (kce_common.h).
#include <string>
#include <vector>

#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "kce_common.h"

namespace kce {
namespace {

using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

absl::Status GetAttrs(InferenceContext* c, bool pooling, bool corr, WindowAttrs* a) {
  std::vector<int64_t> ksize, strides, pads;
  std::string padding_mode, mode = "cross_correlation", data_format;
  if (pooling) TF_RETURN_IF_ERROR(c->GetAttr("ksize", &ksize));
  TF_RETURN_IF_ERROR(c->GetAttr("strides", &strides));
  TF_RETURN_IF_ERROR(c->GetAttr("pads", &pads));
  TF_RETURN_IF_ERROR(c->GetAttr("padding_mode", &padding_mode));
  if (corr) TF_RETURN_IF_ERROR(c->GetAttr("mode", &mode));
  TF_RETURN_IF_ERROR(c->GetAttr("data_format", &data_format));
  return MakeWindowAttrs(ksize, strides, pads, padding_mode, mode, data_format, pooling, a);
}

// (n, h, w, c) dimension handles of a rank-4 shape in the op's layout.
void Split(InferenceContext* c, ShapeHandle s, bool cl, DimensionHandle d[4]) {
  d[0] = c->Dim(s, 0);
  d[1] = c->Dim(s, cl ? 1 : 2);
  d[2] = c->Dim(s, cl ? 2 : 3);
  d[3] = c->Dim(s, cl ? 3 : 1);
}

ShapeHandle Join(InferenceContext* c, bool cl, DimensionHandle n, DimensionHandle h,
                 DimensionHandle w, DimensionHandle ch) {
  return cl ? c->MakeShape({n, h, w, ch}) : c->MakeShape({n, ch, h, w});
}

absl::Status OutDim(InferenceContext* c, DimensionHandle in, DimensionHandle k, i64 s, i64 before,
                    i64 after, int mode, bool pooling, const char* axis, DimensionHandle* out) {
  if (!c->ValueKnown(in) || !c->ValueKnown(k)) {
    *out = c->UnknownDim();
    return absl::OkStatus();
  }
  i64 o = 0;
  TF_RETURN_IF_ERROR(
      AxisOutput(c->Value(in), c->Value(k), s, before, after, mode, pooling, axis, &o));
  *out = c->MakeDim(o);
  return absl::OkStatus();
}

// Forward output shape of a correlation from input x and kernel shapes.
absl::Status CorrOutput(InferenceContext* c, const WindowAttrs& a, ShapeHandle x, ShapeHandle k,
                        ShapeHandle* y) {
  DimensionHandle d[4], ch;
  Split(c, x, a.channels_last, d);
  TF_RETURN_IF_ERROR(c->Merge(d[3], c->Dim(k, 2), &ch));
  DimensionHandle oh, ow;
  TF_RETURN_IF_ERROR(OutDim(c, d[1], c->Dim(k, 0), a.sh, a.pt, a.pb, a.mode, false, "height", &oh));
  TF_RETURN_IF_ERROR(OutDim(c, d[2], c->Dim(k, 1), a.sw, a.pl, a.pr, a.mode, false, "width", &ow));
  *y = Join(c, a.channels_last, d[0], oh, ow, c->Dim(k, 3));
  return absl::OkStatus();
}

absl::Status PoolOutput(InferenceContext* c, const WindowAttrs& a, ShapeHandle x, ShapeHandle* y) {
  DimensionHandle d[4];
  Split(c, x, a.channels_last, d);
  DimensionHandle oh, ow;
  TF_RETURN_IF_ERROR(OutDim(c, d[1], c->MakeDim(a.kh), a.sh, a.pt, a.pb, a.mode, true, "height", &oh));
  TF_RETURN_IF_ERROR(OutDim(c, d[2], c->MakeDim(a.kw), a.sw, a.pl, a.pr, a.mode, true, "width", &ow));
  *y = Join(c, a.channels_last, d[0], oh, ow, d[3]);
  return absl::OkStatus();
}

absl::Status Corr2DShape(InferenceContext* c) {
  WindowAttrs a;
  TF_RETURN_IF_ERROR(GetAttrs(c, false, true, &a));
  ShapeHandle x, k, y;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &x));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &k));
  TF_RETURN_IF_ERROR(CorrOutput(c, a, x, k, &y));
  c->set_output(0, y);
  return absl::OkStatus();
}

absl::Status Corr2DBackpropInputShape(InferenceContext* c) {
  WindowAttrs a;
  TF_RETURN_IF_ERROR(GetAttrs(c, false, true, &a));
  ShapeHandle sizes, x, k, dy, y;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 1, &sizes));
  TF_RETURN_IF_ERROR(c->MakeShapeFromShapeTensor(0, &x));
  TF_RETURN_IF_ERROR(c->WithRank(x, 4, &x));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &k));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 4, &dy));
  TF_RETURN_IF_ERROR(CorrOutput(c, a, x, k, &y));
  TF_RETURN_IF_ERROR(c->Merge(y, dy, &y));
  c->set_output(0, x);
  return absl::OkStatus();
}

absl::Status Corr2DBackpropFilterShape(InferenceContext* c) {
  WindowAttrs a;
  TF_RETURN_IF_ERROR(GetAttrs(c, false, true, &a));
  ShapeHandle sizes, x, k, dy, y;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &x));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 1, &sizes));
  TF_RETURN_IF_ERROR(c->MakeShapeFromShapeTensor(1, &k));
  TF_RETURN_IF_ERROR(c->WithRank(k, 4, &k));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 4, &dy));
  TF_RETURN_IF_ERROR(CorrOutput(c, a, x, k, &y));
  TF_RETURN_IF_ERROR(c->Merge(y, dy, &y));
  c->set_output(0, k);
  return absl::OkStatus();
}

absl::Status PoolShape(InferenceContext* c) {
  WindowAttrs a;
  TF_RETURN_IF_ERROR(GetAttrs(c, true, false, &a));
  ShapeHandle x, y;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &x));
  TF_RETURN_IF_ERROR(PoolOutput(c, a, x, &y));
  c->set_output(0, y);
  return absl::OkStatus();
}

absl::Status MaxPoolGradShape(InferenceContext* c) {
  WindowAttrs a;
  TF_RETURN_IF_ERROR(GetAttrs(c, true, false, &a));
  ShapeHandle x, y, dy;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &x));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &dy));
  TF_RETURN_IF_ERROR(PoolOutput(c, a, x, &y));
  TF_RETURN_IF_ERROR(c->Merge(y, dy, &y));
  c->set_output(0, x);
  return absl::OkStatus();
}

absl::Status MeanPoolGradShape(InferenceContext* c) {
  WindowAttrs a;
  TF_RETURN_IF_ERROR(GetAttrs(c, true, false, &a));
  ShapeHandle sizes, x, y, dy;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 1, &sizes));
  TF_RETURN_IF_ERROR(c->MakeShapeFromShapeTensor(0, &x));
  TF_RETURN_IF_ERROR(c->WithRank(x, 4, &x));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &dy));
  TF_RETURN_IF_ERROR(PoolOutput(c, a, x, &y));
  TF_RETURN_IF_ERROR(c->Merge(y, dy, &y));
  c->set_output(0, x);
  return absl::OkStatus();
}

}  // namespace
}  // namespace kce

#define KCE_CORR_ATTRS                                                   \
  Attr("T: {half, bfloat16, float, double}")                             \
      .Attr("strides: list(int)")                                        \
      .Attr("pads: list(int)")                                           \
      .Attr("padding_mode: {'zeros', 'replicate', 'reflect'} = 'zeros'") \
      .Attr("mode: {'cross_correlation', 'convolution'} = 'cross_correlation'") \
      .Attr("data_format: {'NHWC', 'NCHW'} = 'NHWC'")

#define KCE_POOL_ATTRS                                      \
  Attr("T: {half, bfloat16, float, double}")                \
      .Attr("ksize: list(int)")                             \
      .Attr("strides: list(int)")                           \
      .Attr("pads: list(int)")                              \
      .Attr("padding_mode: {'zeros', 'ignore'} = 'zeros'")  \
      .Attr("data_format: {'NHWC', 'NCHW'} = 'NHWC'")

REGISTER_OP("KerasCnnExt>Corr2D")
    .Input("x: T")
    .Input("kernel: T")
    .Output("y: T")
    .KCE_CORR_ATTRS
    .SetShapeFn(kce::Corr2DShape)
    .Doc("Textbook 2-D cross-correlation (or convolution) with per-side padding "
         "pads=[top, bottom, left, right] in mode zeros/replicate/reflect. No bias.");

REGISTER_OP("KerasCnnExt>Corr2DBackpropInput")
    .Input("input_sizes: int32")
    .Input("kernel: T")
    .Input("dy: T")
    .Output("dx: T")
    .KCE_CORR_ATTRS
    .SetShapeFn(kce::Corr2DBackpropInputShape);

REGISTER_OP("KerasCnnExt>Corr2DBackpropFilter")
    .Input("x: T")
    .Input("filter_sizes: int32")
    .Input("dy: T")
    .Output("dkernel: T")
    .KCE_CORR_ATTRS
    .SetShapeFn(kce::Corr2DBackpropFilterShape);

REGISTER_OP("KerasCnnExt>MaxPool2D")
    .Input("x: T")
    .Output("y: T")
    .KCE_POOL_ATTRS
    .SetShapeFn(kce::PoolShape);

REGISTER_OP("KerasCnnExt>MaxPool2DGrad")
    .Input("x: T")
    .Input("dy: T")
    .Output("dx: T")
    .KCE_POOL_ATTRS
    .SetShapeFn(kce::MaxPoolGradShape);

REGISTER_OP("KerasCnnExt>MeanPool2D")
    .Input("x: T")
    .Output("y: T")
    .KCE_POOL_ATTRS
    .SetShapeFn(kce::PoolShape);

REGISTER_OP("KerasCnnExt>MeanPool2DGrad")
    .Input("input_sizes: int32")
    .Input("dy: T")
    .Output("dx: T")
    .KCE_POOL_ATTRS
    .SetShapeFn(kce::MeanPoolGradShape);
