// Op registrations of the pooling family: KerasCnnExt>MaxPool2D, >MaxPool2DGrad, >MeanPool2D,
// >MeanPool2DGrad, with shape functions that validate the attributes and the known sizes exactly
// like the kernels do.
#include "tensorflow/core/framework/op.h"
#include "ops/shape_fns.h"

namespace kce {
namespace {

using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

// (x) -> y; (x, dy) -> dx (max); (input_sizes, dy) -> dx (mean). kGrad: a gradient op, whose last
// input is dy and whose output has the input's shape; kSizes: input 0 is a size vector.
template <bool kGrad, bool kSizes>
absl::Status PoolShape(InferenceContext* c) {
  WindowAttrs a;
  TF_RETURN_IF_ERROR(ReadWindowAttrs(c, true, &a));
  ShapeHandle x, y;
  TF_RETURN_IF_ERROR(Rank4Input(c, 0, kSizes, &x));
  TF_RETURN_IF_ERROR(
      WindowOutput(c, a, true, x, c->MakeDim(a.kh), c->MakeDim(a.kw), FormatDim(c, x, a, 'C'), &y));
  if (kGrad) TF_RETURN_IF_ERROR(MergeDy(c, 1, y));
  c->set_output(0, kGrad ? x : y);
  return absl::OkStatus();
}

}  // namespace
}  // namespace kce

#define KCE_POOL_ATTRS                                     \
  Attr("T: {half, bfloat16, float, double}")               \
      .Attr("ksize: list(int)")                            \
      .Attr("strides: list(int)")                          \
      .Attr("pads: list(int)")                             \
      .Attr("padding_mode: {'zeros', 'ignore'} = 'zeros'") \
      .Attr("data_format: {'NHWC', 'NCHW'} = 'NHWC'")       \
      .Attr("ceil_mode: bool = false")

REGISTER_OP("KerasCnnExt>MaxPool2D")
    .Input("x: T")
    .Output("y: T")
    .KCE_POOL_ATTRS
    .SetShapeFn(kce::PoolShape<false, false>)
    .Doc("Max pooling with per-side padding pads=[top, bottom, left, right]: padded cells hold 0 "
         "('zeros') or never win ('ignore'); NaN wins over every number, the first of equal "
         "cells in row-major order wins. ceil_mode: PyTorch's output rounding; the cells of the last "
         "windows beyond the padded input never win.");

REGISTER_OP("KerasCnnExt>MaxPool2DGrad")
    .Input("x: T")
    .Input("dy: T")
    .Output("dx: T")
    .KCE_POOL_ATTRS
    .SetShapeFn(kce::PoolShape<true, false>);

REGISTER_OP("KerasCnnExt>MeanPool2D")
    .Input("x: T")
    .Output("y: T")
    .KCE_POOL_ATTRS
    .SetShapeFn(kce::PoolShape<false, false>)
    .Doc("Mean pooling with per-side padding: the divisor is the window size ('zeros') or the "
         "number of input cells in the window ('ignore'); with ceil_mode, cells beyond the padded "
         "input are not counted (PyTorch's avg_pool2d).");

REGISTER_OP("KerasCnnExt>MeanPool2DGrad")
    .Input("input_sizes: int32")
    .Input("dy: T")
    .Output("dx: T")
    .KCE_POOL_ATTRS
    .SetShapeFn(kce::PoolShape<true, true>);
