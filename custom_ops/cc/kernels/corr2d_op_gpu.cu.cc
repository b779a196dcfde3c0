// CUDA kernels of the correlation ops (see gpu_launch.cu.h): Corr2D, Corr2DBackpropInput,
// Corr2DBackpropFilter, each one thread per output element running corr2d_functors.h.
#include "kernels/corr2d_functors.h"
#include "kernels/gpu_launch.cu.h"

namespace kce {
namespace gpu {

int CorrForward(void* stream, DType t, const CorrParams& p, const void* x, const void* w, void* y) {
  return Launch<CorrForwardStore>(stream, t, p, x, w, y);
}

int CorrBackpropInput(void* stream, DType t, const CorrParams& p, const void* w, const void* dy,
                      void* dx) {
  return Launch<CorrBackpropInputStore>(stream, t, p, w, dy, dx);
}

int CorrBackpropFilter(void* stream, DType t, const CorrParams& p, const void* x, const void* dy,
                       void* dw) {
  return Launch<CorrBackpropFilterStore>(stream, t, p, x, dy, dw);
}

// Defined once, here, for the whole library.
const char* ErrorString(int err) { return cudaGetErrorString(static_cast<cudaError_t>(err)); }

}  // namespace gpu
}  // namespace kce
