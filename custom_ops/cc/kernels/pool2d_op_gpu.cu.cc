// CUDA kernels of the pooling ops (see gpu_launch.cu.h): MaxPool2D, MaxPool2DGrad, MeanPool2D,
// MeanPool2DGrad, each one thread per output element running pool2d_functors.h (so the GPU ranks
// NaN and ties exactly like the CPU).
#include "kernels/gpu_launch.cu.h"
#include "kernels/pool2d_functors.h"

namespace kce {
namespace gpu {

int MaxPoolForward(void* stream, DType t, const PoolParams& p, const void* x, void* y) {
  return Launch<MaxPoolForwardStore>(stream, t, p, x, nullptr, y);
}

int MaxPoolGrad(void* stream, DType t, const PoolParams& p, const void* x, const void* dy,
                void* dx) {
  return Launch<MaxPoolGradStore>(stream, t, p, x, dy, dx);
}

int MeanPoolForward(void* stream, DType t, const PoolParams& p, const void* x, void* y) {
  return Launch<MeanPoolForwardStore>(stream, t, p, x, nullptr, y);
}

int MeanPoolGrad(void* stream, DType t, const PoolParams& p, const void* dy, void* dx) {
  return Launch<MeanPoolGradStore>(stream, t, p, dy, nullptr, dx);
}

}  // namespace gpu
}  // namespace kce
