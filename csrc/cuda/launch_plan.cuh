// launch_plan: what each warp of a planned pull's launch (csrc/cuda/planned_pull.cuh) reads, found
// by the code that launches it: the same WorkPlan, the same launch configuration, and in each
// thread the same span and row loop as PlannedPullKernel and PlanFixupKernel, counting instead of
// summing. kgqa_kernels.launch_plan() (kgqa_kernels/work_plan.py) is its Python face.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>

#include <tuple>
#include <vector>

#include "../checks.h"
#include "../kb_layout.h"
#include "../work_plan.h"
#include "launch.h"
#include "planned_pull.cuh"

namespace kgqa {
namespace gpu {

// Thread (w, b) of the planned pull's grid: lane 0 of each warp writes the facts its worker reads
// in pass 1 (work) and the partials it adds in the fixup (fixup), at the warp's index in the
// launch (blocks in x-fastest order, warps by linear thread index within a block, as the hardware
// numbers them). Warps with no worker, or past the batch, read nothing.
struct PlanWorkKernel {
  const int64_t* ptr;
  WorkPlan plan;
  int64_t B;
  LaunchConfig config;
  int64_t* work;
  int64_t* fixup;
  KGQA_HD void operator()(const Thread& t, int64_t) const {
    const int64_t lane = t.thread.x + t.block_dim.x * (t.thread.y + t.block_dim.y * t.thread.z);
    if (lane % kWarp != 0) return;
    const int64_t block = t.block.x + config.grid.x * (t.block.y + config.grid.y * t.block.z);
    const int64_t threads = config.block.x * config.block.y * config.block.z;
    const int64_t warp = block * (threads / kWarp) + lane / kWarp;
    const int64_t w = thread_row(t), b = thread_col(t);
    int64_t facts = 0, partials = 0;
    if (w < plan.workers() && b < B) {
      const WorkerSpan span = plan.span(ptr, w);
      const int64_t last = span.last_row(plan.rows);
      for (int64_t r = span.begin.row; r <= last; ++r) {
        const int64_t n = span.last_fact(ptr[r + 1]) - span.first_fact(ptr[r]);
        facts += n > 0 ? n : 0;
      }
      const int64_t first = plan.fixup_first(ptr, span, w);
      if (first >= 0) partials = w - first + 1;
    }
    work[warp] = facts;
    fixup[warp] = partials;
  }
};

// (work, fixup, [grid.x, grid.y, grid.z, block.x, block.y, block.z]) of the planned pull of a
// batch of `batch` columns over the KB (inverse: into subjects). check_kb checks the list's shapes,
// not its values: on a corrupt row pointer the counts are in-bounds nonsense (kgqa_kernels.
// launch_plan takes a SparseKB, whose tensors were validated when it was built).
template <typename L>
std::tuple<at::Tensor, at::Tensor, std::vector<int64_t>> launch_plan_impl(at::TensorList kb, int64_t batch,
                                                                          bool inverse) {
  check_kb(kb, "launch_plan");
  TORCH_CHECK(batch >= 1, "launch_plan(): batch must be at least 1, got ", batch);
  typename L::Guard guard(kb_device(kb));
  const PullIndex idx = pull_index(kb, inverse);
  const WorkPlan plan{kb_num_entities(kb), idx.col.numel()};
  const LaunchConfig config = planned_pull_config(plan, batch);
  const int64_t warps = config.grid.x * config.grid.y * config.grid.z *
                        (config.block.x * config.block.y * config.block.z / kWarp);
  const auto options = idx.ptr.options().dtype(at::kLong);
  at::Tensor work = at::zeros({plan.workers() > 0 ? warps : 0}, options);
  at::Tensor fixup = at::zeros({plan.workers() > 0 ? warps : 0}, options);
  if (plan.workers() > 0) {
    L::launch(config, PlanWorkKernel{idx.ptr.data_ptr<int64_t>(), plan, batch, config, work.data_ptr<int64_t>(),
                                     fixup.data_ptr<int64_t>()});
  }
  return {work, fixup, {config.grid.x, config.grid.y, config.grid.z, config.block.x, config.block.y, config.block.z}};
}

}  // namespace gpu
}  // namespace kgqa

#define KGQA_REGISTER_GPU_LAUNCH_PLAN(m, Launcher) m.impl("launch_plan", &kgqa::gpu::launch_plan_impl<Launcher>);
