// The real launch of the functor kernels (csrc/cuda/<op>.cuh) on the current CUDA stream.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include "launch.h"

namespace kgqa {
namespace gpu {

template <typename Kernel>
__global__ void run_kernel(const Kernel kernel, int64_t grid_stride) {
  Thread t;
  t.block = {blockIdx.x, blockIdx.y, blockIdx.z};
  t.thread = {threadIdx.x, threadIdx.y, threadIdx.z};
  t.block_dim = {blockDim.x, blockDim.y, blockDim.z};
  kernel(t, grid_stride);
}

struct CudaLauncher {
  template <typename Kernel>
  static void launch(const LaunchConfig& c, const Kernel& kernel) {
    const dim3 grid(unsigned(c.grid.x), unsigned(c.grid.y), unsigned(c.grid.z));
    const dim3 block(unsigned(c.block.x), unsigned(c.block.y), unsigned(c.block.z));
    run_kernel<<<grid, block, 0, c10::cuda::getCurrentCUDAStream()>>>(kernel, c.grid.x * c.block.x);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

}  // namespace gpu
}  // namespace kgqa
