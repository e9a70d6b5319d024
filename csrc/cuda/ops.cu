// CUDA implementations of every op (csrc/cuda/ops.h), registered under the CUDA dispatch key.
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "launch_cuda.cuh"
#include "ops.h"

namespace kgqa {
namespace gpu {

struct GuardedCudaLauncher : CudaLauncher {
  using Guard = c10::cuda::CUDAGuard;
};

}  // namespace gpu
}  // namespace kgqa

TORCH_LIBRARY_IMPL(kgqa_kernels, CUDA, m) { KGQA_REGISTER_GPU_OPS(m, kgqa::gpu::GuardedCudaLauncher) }
