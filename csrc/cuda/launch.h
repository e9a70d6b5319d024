// What a kernel needs to be both a CUDA kernel and plain host C++: kernels are functors whose
// operator()(const Thread&) is the body of one thread; the launch configuration is computed once
// (here) for both the real launch (launch_cuda.cuh) and the host emulation (HostLauncher below),
// which runs the same grid on the CPU in tests; both give each op call an error flag (Errors) for
// values out of range. No kernel uses shared memory, barriers or warp
// primitives, so running the threads of a block one after another is a faithful model of them.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../bounds.h"
#include "../kb_layout.h"
#include "../portability.h"

namespace kgqa {
namespace gpu {

struct Dim3 {
  int64_t x = 1, y = 1, z = 1;
};

// blockIdx, threadIdx, blockDim of one thread.
struct Thread {
  Dim3 block, thread, block_dim;
};

struct LaunchConfig {
  Dim3 grid, block;
};

constexpr int64_t kWarp = 32;
constexpr int64_t kThreadsPerBlock = 256;
constexpr int64_t kMaxGridY = 65535;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// One thread per (row, batch column): the batch across the lanes of a warp (coalesced loads of a
// row of x), several rows per block when the batch is narrow. The pull-shaped kernels give a "row"
// to each worker of their work plan (csrc/cuda/planned_pull.cuh), dr to each chunk of facts.
inline LaunchConfig rows_by_batch(int64_t rows, int64_t batch) {
  LaunchConfig c;
  c.block.x = std::min(ceil_div(std::max<int64_t>(batch, 1), kWarp) * kWarp, kThreadsPerBlock);
  c.block.y = kThreadsPerBlock / c.block.x;
  c.grid.x = std::max<int64_t>(1, ceil_div(rows, c.block.y));
  c.grid.y = std::max<int64_t>(1, ceil_div(batch, c.block.x));
  return c;
}

// Elementwise kernels: a grid-stride loop over n items.
inline LaunchConfig elementwise(int64_t n) {
  LaunchConfig c;
  c.block.x = kThreadsPerBlock;
  c.grid.x = std::max<int64_t>(1, std::min<int64_t>(ceil_div(n, kThreadsPerBlock), 4096));
  return c;
}

// The (row, batch column) of a thread under rows_by_batch.
KGQA_HD inline int64_t thread_row(const Thread& t) { return t.block.x * t.block_dim.y + t.thread.y; }
KGQA_HD inline int64_t thread_col(const Thread& t) { return t.block.y * t.block_dim.x + t.thread.x; }
// First item and stride of a grid-stride loop under elementwise.
KGQA_HD inline int64_t grid_first(const Thread& t) { return t.block.x * t.block_dim.x + t.thread.x; }

// Runs a launch on the CPU: blocks one after another, and the threads of each block one after
// another (valid because the kernels share nothing between threads of a block).
struct HostLauncher {
  struct Guard {  // the CUDA launcher's device guard; nothing to guard on the CPU
    template <typename Device>
    explicit Guard(const Device&) {}
  };
  // The error flag of one op call (csrc/bounds.h): kernels leave a code in flag(); done() after the
  // last launch raises it. Here the flag is host memory and launches have finished when they
  // return, so the error comes at once, from the call that read the bad value.
  class Errors {
   public:
    Errors(const char* op, const at::Device&) : op_(op) {}
    int32_t* flag() { return &code_; }
    void done() const {
      if (code_ != 0) raise_bad_value(op_, code_);
    }

   private:
    const char* op_;
    int32_t code_ = 0;
  };
  template <typename Kernel>
  static void launch(const LaunchConfig& c, const Kernel& kernel) {
    Thread t;
    t.block_dim = c.block;
    for (t.block.z = 0; t.block.z < c.grid.z; ++t.block.z)
      for (t.block.y = 0; t.block.y < c.grid.y; ++t.block.y)
        for (t.block.x = 0; t.block.x < c.grid.x; ++t.block.x)
          for (t.thread.z = 0; t.thread.z < c.block.z; ++t.thread.z)
            for (t.thread.y = 0; t.thread.y < c.block.y; ++t.thread.y)
              for (t.thread.x = 0; t.thread.x < c.block.x; ++t.thread.x) kernel(t, grid_stride(c));
  }
  static int64_t grid_stride(const LaunchConfig& c) { return c.grid.x * c.block.x; }
};

// Up to GPU_MAX_BRANCHES tensors passed by value to a kernel.
template <typename T>
struct Ptrs {
  T p[GPU_MAX_BRANCHES];
};

template <typename T, typename Src>
Ptrs<T> ptrs_of(const std::vector<at::Tensor>& ts, Src get) {
  TORCH_CHECK(int64_t(ts.size()) <= GPU_MAX_BRANCHES, "at most ", GPU_MAX_BRANCHES, " tensors per GPU op, got ",
              ts.size());
  Ptrs<T> p{};
  for (size_t i = 0; i < ts.size(); ++i) p.p[i] = get(ts[i]);
  return p;
}

}  // namespace gpu
}  // namespace kgqa
