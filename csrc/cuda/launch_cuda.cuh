// The real launch of the functor kernels (csrc/cuda/<op>.cuh) on the current CUDA stream.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include <memory>
#include <mutex>
#include <vector>

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

// The error flag of the ops on one device (csrc/bounds.h). Reading it after each call would
// synchronise the host with the GPU on every op, so done() only queues a copy of the flag into
// pinned host memory behind the op's kernels and records an event; the next op call on the device
// whose copy has landed raises the error (naming the op that found it) and clears the flag. An
// error surfaces one call late, or at torch.cuda.synchronize() followed by any op; the kernels
// never read out of bounds meanwhile.
class CudaErrors {
 public:
  CudaErrors(const char* op, const at::Device& device) : op_(op), state_(state(device.index())) {
    if (state_.pending && cudaEventQuery(state_.landed) == cudaSuccess) {
      state_.pending = false;
      const int32_t code = *state_.host;
      if (code != 0) {
        *state_.host = 0;
        C10_CUDA_CHECK(cudaMemsetAsync(state_.device, 0, sizeof(int32_t), c10::cuda::getCurrentCUDAStream()));
        raise_bad_value(state_.op, code, "(reported at the next call on this device) ");
      }
    }
  }
  int32_t* flag() { return state_.device; }
  void done() {
    if (state_.pending) return;  // a copy is in flight; the flag stays set for a later done() to copy
    const auto stream = c10::cuda::getCurrentCUDAStream();
    C10_CUDA_CHECK(cudaMemcpyAsync(state_.host, state_.device, sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
    C10_CUDA_CHECK(cudaEventRecord(state_.landed, stream));
    state_.pending = true;
    state_.op = op_;
  }

 private:
  struct State {
    int32_t* device = nullptr;  // the flag the kernels write
    int32_t* host = nullptr;    // pinned: where done() copies it
    cudaEvent_t landed{};
    bool pending = false;
    const char* op = "";
  };
  // One State per device, created on first use and kept for the life of the process (ops are
  // called from one thread per device in practice; a mutex guards creation).
  static State& state(int device) {
    static std::mutex mutex;
    static std::vector<std::unique_ptr<State>> states;
    std::lock_guard<std::mutex> lock(mutex);
    if (int(states.size()) <= device) states.resize(device + 1);
    if (!states[device]) {
      auto s = std::make_unique<State>();
      C10_CUDA_CHECK(cudaMalloc(&s->device, sizeof(int32_t)));
      C10_CUDA_CHECK(cudaMemset(s->device, 0, sizeof(int32_t)));
      C10_CUDA_CHECK(cudaHostAlloc(&s->host, sizeof(int32_t), cudaHostAllocDefault));
      *s->host = 0;
      C10_CUDA_CHECK(cudaEventCreateWithFlags(&s->landed, cudaEventDisableTiming));
      states[device] = std::move(s);
    }
    return *states[device];
  }

  const char* op_;
  State& state_;
};

struct CudaLauncher {
  using Errors = CudaErrors;
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
