// Op registrations of the correlation family: KerasCnnExt>Corr2D and its two gradients, with shape
// functions that validate the attributes and the known sizes exactly like the kernels do.
#include "tensorflow/core/framework/op.h"
#include "kernels/corr2d_attrs.h"
#include "ops/shape_fns.h"

namespace kce {
namespace {

using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

i64 KnownOr(InferenceContext* c, DimensionHandle d) { return c->ValueKnown(d) ? c->Value(d) : -1; }

// Kernel axis `dim` as the window of the shared geometry: the dilated kernel's extent, after its
// own checks (CheckDilatedAxis).
absl::Status DilatedWindow(InferenceContext* c, const WindowAttrs& a, ShapeHandle x, ShapeHandle k,
                           int dim, DimensionHandle* window) {
  const bool h = dim == 0;
  const DimensionHandle kd = c->Dim(k, dim);
  if (!c->ValueKnown(kd)) {
    *window = kd;
    return absl::OkStatus();
  }
  const i64 taps = c->Value(kd), d = h ? a.dh : a.dw;
  TF_RETURN_IF_ERROR(CheckDilatedAxis(KnownOr(c, FormatDim(c, x, a, h ? 'H' : 'W')), taps, d,
                                      h ? a.pt : a.pl, h ? a.pb : a.pr, h ? "height" : "width"));
  *window = c->MakeDim(DilatedExtent(taps, d));
  return absl::OkStatus();
}

// Forward output shape of a correlation of input x with a kernel of shape (M, N, C_in / groups,
// C_out).
absl::Status CorrOutput(InferenceContext* c, const WindowAttrs& a, ShapeHandle x, ShapeHandle k,
                        ShapeHandle* y) {
  const DimensionHandle channels = FormatDim(c, x, a, 'C');
  TF_RETURN_IF_ERROR(CheckCorrGroups(a.groups, KnownOr(c, channels), KnownOr(c, c->Dim(k, 2)),
                                     KnownOr(c, c->Dim(k, 3))));
  if (a.groups == 1) {
    DimensionHandle merged;
    TF_RETURN_IF_ERROR(c->Merge(channels, c->Dim(k, 2), &merged));
  }
  DimensionHandle kh, kw;
  TF_RETURN_IF_ERROR(DilatedWindow(c, a, x, k, 0, &kh));
  TF_RETURN_IF_ERROR(DilatedWindow(c, a, x, k, 1, &kw));
  return WindowOutput(c, a, false, x, kh, kw, c->Dim(k, 3), y);
}

// (x, kernel) -> y (kSizes = -1); (input_sizes, kernel, dy) -> dx (kSizes = 0);
// (x, filter_sizes, dy) -> dkernel (kSizes = 1): a gradient's output has the shape its size vector
// gives.
template <int kSizes>
absl::Status CorrShape(InferenceContext* c) {
  WindowAttrs a;
  TF_RETURN_IF_ERROR(ReadWindowAttrs(c, false, &a));
  ShapeHandle x, k, y;
  TF_RETURN_IF_ERROR(Rank4Input(c, 0, kSizes == 0, &x));
  TF_RETURN_IF_ERROR(Rank4Input(c, 1, kSizes == 1, &k));
  TF_RETURN_IF_ERROR(CorrOutput(c, a, x, k, &y));
  if (kSizes >= 0) TF_RETURN_IF_ERROR(MergeDy(c, 2, y));
  c->set_output(0, kSizes == -1 ? y : kSizes == 0 ? x : k);
  return absl::OkStatus();
}

}  // namespace
}  // namespace kce

#define KCE_CORR_ATTRS                                                          \
  Attr("T: {half, bfloat16, float, double}")                                    \
      .Attr("strides: list(int)")                                               \
      .Attr("pads: list(int)")                                                  \
      .Attr("padding_mode: {'zeros', 'replicate', 'reflect'} = 'zeros'")        \
      .Attr("mode: {'cross_correlation', 'convolution'} = 'cross_correlation'") \
      .Attr("data_format: {'NHWC', 'NCHW'} = 'NHWC'")                         \
      .Attr("dilations: list(int) = [1, 1]")                                    \
      .Attr("groups: int = 1")

REGISTER_OP("KerasCnnExt>Corr2D")
    .Input("x: T")
    .Input("kernel: T")
    .Output("y: T")
    .KCE_CORR_ATTRS
    .SetShapeFn(kce::CorrShape<-1>)
    .Doc("Textbook 2-D cross-correlation (or convolution) with per-side padding "
         "pads=[top, bottom, left, right] in mode zeros/replicate/reflect, kernel taps "
         "dilations=[dh, dw] cells apart and `groups` channel groups (PyTorch's conv2d "
         "geometry; kernel (M, N, C_in / groups, C_out)). No bias.");

REGISTER_OP("KerasCnnExt>Corr2DBackpropInput")
    .Input("input_sizes: int32")
    .Input("kernel: T")
    .Input("dy: T")
    .Output("dx: T")
    .KCE_CORR_ATTRS
    .SetShapeFn(kce::CorrShape<0>);

REGISTER_OP("KerasCnnExt>Corr2DBackpropFilter")
    .Input("x: T")
    .Input("filter_sizes: int32")
    .Input("dy: T")
    .Output("dkernel: T")
    .KCE_CORR_ATTRS
    .SetShapeFn(kce::CorrShape<1>);
