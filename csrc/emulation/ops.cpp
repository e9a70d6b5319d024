// Test-only: the CUDA ops of csrc/cuda run on the CPU. The same host code and the same kernel
// functors as the real ones, launched on the same grids by HostLauncher, registered as
// kgqa_kernels_emu::<op> for CPU tensors: the "emulated" backend of the public ops
// (kgqa_kernels/backends.py), with the same fakes and autograd as the other backends, so the op
// tests run it through the public API like any other.
#include <torch/library.h>

#include "../cuda/ops.h"
#include "../schemas.h"

TORCH_LIBRARY(kgqa_kernels_emu, m) { KGQA_DEFINE_SCHEMAS(m) }

TORCH_LIBRARY_IMPL(kgqa_kernels_emu, CPU, m) { KGQA_REGISTER_GPU_OPS(m, kgqa::gpu::HostLauncher) }
