// launch_plan: what each warp of a planned pull's launch (csrc/cuda/planned_pull.cuh) does, found
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

// Lane 0 of each warp of the planned pull's grid counts what its warp does and writes it at the
// warp's index in the launch (blocks in x-fastest order, warps by linear thread index within a
// block, as the hardware numbers them): it walks the warp's 32 threads, as thread_row/thread_col
// map them, and takes the distinct workers among those holding a batch column (one, or 32 / lanes
// for a narrow batch: planned_pull_lanes). Lane 0 does the walk itself so that no thread depends on
// another (no atomics, no warp primitives: the emulation stays faithful).
//
// work: the warp's fact steps in pass 1, its workers' row loops in lockstep (SIMT): iteration j of
// the row loop lasts as long as the largest j-th row among its workers (lanes reconverge after
// each row), so work = sum over j of the max over the warp's workers of the facts each reads in
// its j-th row. With one worker per warp this is that worker's facts. fixup: the partials the
// warp adds in the fixup pass, the max over its workers (one loop, no nesting). Warps with no
// worker, or past the batch, do nothing (0).
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
    // The warp's workers, in lane order (a worker's lanes are consecutive).
    WorkerSpan spans[kWarp];
    int64_t n = 0, last_w = -1, partials = 0;
    for (int64_t j = 0; j < kWarp; ++j) {
      Thread u = t;
      const int64_t l = lane + j;
      u.thread.x = l % t.block_dim.x;
      u.thread.y = (l / t.block_dim.x) % t.block_dim.y;
      u.thread.z = l / (t.block_dim.x * t.block_dim.y);
      const int64_t w = thread_row(u), b = thread_col(u);
      if (w >= plan.workers() || b >= B || w == last_w) continue;
      last_w = w;
      spans[n] = plan.span(ptr, w);
      const int64_t first = plan.fixup_first(ptr, spans[n], w);
      if (first >= 0 && w - first + 1 > partials) partials = w - first + 1;
      ++n;
    }
    int64_t facts = 0;
    for (int64_t j = 0;; ++j) {  // row-loop iteration j of every worker of the warp
      bool any = false;
      int64_t most = 0;
      for (int64_t p = 0; p < n; ++p) {
        const int64_t r = spans[p].begin.row + j;
        if (r > spans[p].last_row(plan.rows)) continue;
        any = true;
        const int64_t f = spans[p].last_fact(ptr[r + 1]) - spans[p].first_fact(ptr[r]);
        if (f > most) most = f;
      }
      if (!any) break;
      facts += most;
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
