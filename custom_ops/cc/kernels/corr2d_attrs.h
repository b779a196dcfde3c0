// Validation of the correlation ops' dilations and groups against the shapes, shared by the shape
// functions (ops/corr2d_ops.cc, on the sizes known at graph-construction time) and the kernels
// (window_kernel.h, MakeCorrParams), so both reject the same inputs with the same message. The
// attribute ranges themselves are read and checked by ReadCorrGeometryAttrs (window_attrs.h).
#ifndef KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_CORR2D_ATTRS_H_
#define KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_CORR2D_ATTRS_H_

#include "tensorflow/core/platform/errors.h"
#include "kernels/window_attrs.h"

namespace kce {

// Extent d*(k-1)+1 of a kernel axis of k taps dilated by d; k itself when k < 1 (AxisOutput then
// rejects the kernel size with its own message).
inline i64 DilatedExtent(i64 k, i64 d) { return k < 1 ? k : d * (k - 1) + 1; }

// Input channels C, kernel input channels kc and filters F (each -1 when unknown) against `groups`:
// C and F divisible by it, kc == C / groups.
inline absl::Status CheckCorrGroups(i64 groups, i64 C, i64 kc, i64 F) {
  if (C >= 0 && C % groups != 0)
    return tensorflow::errors::InvalidArgument("groups=", groups,
                                               " must divide the input channels ", C);
  if (F >= 0 && F % groups != 0)
    return tensorflow::errors::InvalidArgument("groups=", groups, " must divide the filters ", F,
                                               " (the kernel's last axis)");
  if (C >= 0 && kc >= 0 && kc * groups != C) {
    if (groups == 1)
      return tensorflow::errors::InvalidArgument("Kernel input channels ", kc,
                                                 " do not match the input channels ", C);
    return tensorflow::errors::InvalidArgument(
        "Kernel input channels ", kc, " do not match the input channels per group: ", C,
        " channels / groups=", groups, " = ", C / groups);
  }
  return absl::OkStatus();
}

// The dilated kernel along one axis (input `in` cells, padding before/after, k taps, dilation d;
// `in` or k -1 when unknown): its extent must fit into the padded input and into the ops' 2^31-1
// limit. The rest of the axis's checks are AxisOutput's, run on the extent (DilatedExtent).
inline absl::Status CheckDilatedAxis(i64 in, i64 k, i64 d, i64 before, i64 after,
                                     const char* axis) {
  if (d == 1 || k < 1) return absl::OkStatus();
  const i64 extent = DilatedExtent(k, d);  // k, d <= 2^31-1: no overflow
  if (extent > kMaxAttr)
    return tensorflow::errors::InvalidArgument(
        "The dilated kernel is too large along ", axis, ": kernel ", k, ", dilation ", d,
        ", extent ", extent, " exceeds ", kMaxAttr);
  if (in >= 0 && in + before + after < extent)
    return tensorflow::errors::InvalidArgument(
        "The dilated kernel does not fit into the padded input along ", axis, ": input ", in,
        ", padding (", before, ", ", after, "), kernel ", k, ", dilation ", d, ", extent ",
        extent);
  return absl::OkStatus();
}

}  // namespace kce

#endif  // KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_CORR2D_ATTRS_H_
