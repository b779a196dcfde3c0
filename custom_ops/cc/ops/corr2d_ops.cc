// Op registrations of the correlation family: KerasCnnExt>Corr2D and its two gradients, with shape
// functions that validate the attributes and the known sizes exactly like the kernels do.
#include "tensorflow/core/framework/op.h"
#include "ops/shape_fns.h"

namespace kce {
namespace {

using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

// Forward output shape of a correlation of input x with a kernel of shape (M, N, C_in, C_out).
absl::Status CorrOutput(InferenceContext* c, const WindowAttrs& a, ShapeHandle x, ShapeHandle k,
                        ShapeHandle* y) {
  DimensionHandle channels;
  TF_RETURN_IF_ERROR(c->Merge(FormatDim(c, x, a, 'C'), c->Dim(k, 2), &channels));
  return WindowOutput(c, a, false, x, c->Dim(k, 0), c->Dim(k, 1), c->Dim(k, 3), y);
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
      .Attr("data_format: {'NHWC', 'NCHW'} = 'NHWC'")

REGISTER_OP("KerasCnnExt>Corr2D")
    .Input("x: T")
    .Input("kernel: T")
    .Output("y: T")
    .KCE_CORR_ATTRS
    .SetShapeFn(kce::CorrShape<-1>)
    .Doc("Textbook 2-D cross-correlation (or convolution) with per-side padding "
         "pads=[top, bottom, left, right] in mode zeros/replicate/reflect. No bias.");

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
