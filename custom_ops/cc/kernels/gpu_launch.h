// Host-side entry points of the CUDA kernels (corr2d_op_gpu.cu.cc, pool2d_op_gpu.cu.cc). This header
// includes neither CUDA nor TensorFlow headers: the TensorFlow wrapper (window_kernels_gpu.cc)
// passes its stream and buffers as opaque pointers, so the .cu.cc files stay plain CUDA.
#ifndef KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_GPU_LAUNCH_H_
#define KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_GPU_LAUNCH_H_

#include "kernels/corr2d_functors.h"
#include "kernels/pool2d_functors.h"

namespace kce {
namespace gpu {

enum DType : int { kF16 = 0, kBF16 = 1, kF32 = 2, kF64 = 3 };

// Each returns the cudaError_t of the launch (0 = success) as an int.
int CorrForward(void* stream, DType t, const CorrParams& p, const void* x, const void* w, void* y);
int CorrBackpropInput(void* stream, DType t, const CorrParams& p, const void* w, const void* dy,
                      void* dx);
int CorrBackpropFilter(void* stream, DType t, const CorrParams& p, const void* x, const void* dy,
                       void* dw);
int MaxPoolForward(void* stream, DType t, const PoolParams& p, const void* x, void* y);
int MaxPoolGrad(void* stream, DType t, const PoolParams& p, const void* x, const void* dy,
                void* dx);
int MeanPoolForward(void* stream, DType t, const PoolParams& p, const void* x, void* y);
int MeanPoolGrad(void* stream, DType t, const PoolParams& p, const void* dy, void* dx);
const char* ErrorString(int err);

}  // namespace gpu
}  // namespace kce

#endif  // KERAS_CNN_EXT_CUSTOM_OPS_KERNELS_GPU_LAUNCH_H_
