// The pull of every pull-shaped GPU kernel (follow forward and dx, follow_intersect forward and
// backward) on the work plan of csrc/work_plan.h: a worker is the batch lanes of one warp group
// (planned_pull_config over workers: thread (worker, b); narrow batches on large KBs pack several
// workers into a warp) and reads at most PLAN_ITEMS facts, so a hub row no longer holds up the
// launch behind one warp. What a pull does with the sums of a row (write them, combine branches by
// a t-norm, take their gradients) is a Finish functor, called once per
// (row, b) with the row's k sums: by the worker that holds the whole row, or by the fixup pass for
// a row split over several workers.
//
// Traffic of pass 1 per fact: two indices (and a weight), shared by the lanes, and k rows of x and
// r of B values; each output element is written once (a split row's partials: 2 * workers * k * B
// accumulators, written once and read once by the fixup).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <cstdlib>

#include "../bounds.h"
#include "../kb_layout.h"
#include "../work_plan.h"
#include "launch.h"

namespace kgqa {
namespace gpu {

// Branch i's slot of worker w's partials: head (slot 0: a row that ends in w but started before)
// or tail (slot 1: w's last row, which goes on after w).
KGQA_HD inline int64_t carry_at(int64_t w, int64_t slot, int64_t i, int64_t k, int64_t B, int64_t b) {
  return ((w * 2 + slot) * k + i) * B + b;
}

// Pass 1: thread (w, b) sums, for each row it visits, the facts of the row among its items, for k
// <= KMax branches at once (each in fact order, the order of every follow kernel:
// csrc/cpu/pull_row.h), then finishes the rows it holds whole and leaves partials for the others.
template <typename scalar_t, typename acc_t, typename index_t, int KMax, typename Finish>
struct PlannedPullKernel {
  PullPtrs<index_t> ix;
  WorkPlan plan;
  Ptrs<const scalar_t*> xs, rs;
  int64_t k, B;
  acc_t* carry;
  Finish finish;
  int32_t* err;
  KGQA_HD void operator()(const Thread& t, int64_t) const {
    const int64_t w = thread_row(t), b = thread_col(t);
    if (w >= plan.workers() || b >= B) return;
    const WorkerSpan span = plan.span(ix.ptr, w);
    const int64_t last = span.last_row(plan.rows);
    for (int64_t r = span.begin.row; r <= last; ++r) {
      const int64_t seg_begin = ix.ptr[r], seg_end = ix.ptr[r + 1];
      if (const int32_t bad = ix.bad_segment(seg_begin, seg_end)) {
        report_bad_value(err, bad);
        return;
      }
      acc_t ys[KMax];
#pragma unroll
      for (int i = 0; i < KMax; ++i) ys[i] = acc_t(0);
      // PULL_UNROLL facts at a time: their ids are loaded and checked first (a bad one ends the
      // worker before any of their gathers), so the gathers of all of them can be in flight at
      // once; the adds stay in fact order.
      const int64_t f1 = span.last_fact(seg_end);
      for (int64_t f = span.first_fact(seg_begin); f < f1; f += PULL_UNROLL) {
        const int64_t n = f1 - f < PULL_UNROLL ? f1 - f : PULL_UNROLL;
        int64_t xe[PULL_UNROLL], re[PULL_UNROLL];
        acc_t wf[PULL_UNROLL];
#pragma unroll
        for (int u = 0; u < PULL_UNROLL; ++u) {
          xe[u] = re[u] = 0;
          wf[u] = acc_t(1);
          if (u < n) {
            if (const int32_t bad = ix.bad_fact(f + u)) {
              report_bad_value(err, bad);
              return;
            }
            xe[u] = int64_t(ix.col[f + u]) * B + b;
            re[u] = int64_t(ix.rel[f + u]) * B + b;
            if (ix.weight) wf[u] = acc_t(ix.weight[f + u]);
          }
        }
#pragma unroll
        for (int u = 0; u < PULL_UNROLL; ++u) {
          if (u < n) {
#pragma unroll
            for (int i = 0; i < KMax; ++i) {
              if (i < k) {
                const acc_t xv = acc_t(xs.p[i][xe[u]]);
                ys[i] += acc_t(rs.p[i][re[u]]) * (ix.weight ? wf[u] * xv : xv);
              }
            }
          }
        }
      }
      if (span.starts_here(r, seg_begin) && span.ends_here(r)) {
        finish(r, b, ys);
      } else {
        const int64_t slot = span.ends_here(r) ? 0 : 1;
#pragma unroll
        for (int i = 0; i < KMax; ++i) {
          if (i < k) carry[carry_at(w, slot, i, k, B, b)] = ys[i];
        }
      }
    }
  }
};

// Pass 2: thread (w, b), for a worker whose first row ends in it but started in an earlier one,
// sums that row's partials in worker order (the tails of the workers from the row's first one,
// then w's head) and finishes the row. Every split row has exactly one such worker.
template <typename scalar_t, typename acc_t, typename index_t, int KMax, typename Finish>
struct PlanFixupKernel {
  const int64_t* ptr;
  WorkPlan plan;
  int64_t k, B;
  const acc_t* carry;
  Finish finish;
  KGQA_HD void operator()(const Thread& t, int64_t) const {
    const int64_t w = thread_row(t), b = thread_col(t);
    if (w >= plan.workers() || b >= B) return;
    const WorkerSpan span = plan.span(ptr, w);
    const int64_t first = plan.fixup_first(ptr, span, w);
    if (first < 0) return;
    // Starting from zero changes no bit: a partial is never -0 (each is a sum from +0).
    acc_t ys[KMax];
#pragma unroll
    for (int i = 0; i < KMax; ++i) {
      ys[i] = acc_t(0);
      if (i < k) {
        for (int64_t v = first; v < w; ++v) ys[i] += carry[carry_at(v, 1, i, k, B, b)];
        ys[i] += carry[carry_at(w, 0, i, k, B, b)];
      }
    }
    finish(span.begin.row, b, ys);
  }
};

// Threads per worker: the batch rounded up to a whole warp (rows_by_batch), or, for a narrow batch
// on a large KB, fewer, so that one warp holds several workers instead of one worker and 32 - B
// idle lanes. The work model (kgqa_kernels/bench/gpu_model.py; docs/gpu.md has its numbers and
// commands) counts the critical path in warps, with a packed warp's workers running their row
// loops in lockstep (launch_plan reports that): packing pays only when it cuts waves of warps.
// On the 10M-fact KB (5.1 waves of one-worker warps on the presets' 132 SMs x 64 warps) it
// shortens the forward by 12-16% at 2-4 workers per warp (at B = 1: 15% at 4, 12% at 2, 11% at 8)
// and loses at 16 and 32; on MetaQA's shape or the 1M KB (under one wave) it only lengthens each
// warp (up to 6x slower at 32 per warp). Hence at most kPackWorkersPerWarp workers per warp, and
// only from kPackMinWorkers workers (4 waves; the model has no KB between 0.9 and 5.1 waves to
// place it better).
constexpr int64_t kPackWorkersPerWarp = 4;
constexpr int64_t kPackMinWorkers = 4 * 132 * 64;

// The workers per warp the launch may pack: the rule above, or, when KGQA_PULL_WORKERS_PER_WARP is
// set (for the tests, which have no KB of kPackMinWorkers workers, and for the work model's
// comparisons), that many on any KB (1: never pack).
inline int64_t planned_pull_pack_limit(const WorkPlan& plan) {
  if (const char* env = std::getenv("KGQA_PULL_WORKERS_PER_WARP")) {
    char* end = nullptr;
    const long long n = std::strtoll(env, &end, 10);
    TORCH_CHECK(end != env && *end == '\0' && n >= 1 && n <= kWarp,
                "KGQA_PULL_WORKERS_PER_WARP must be an integer from 1 to ", kWarp, ", got '", env, "'");
    return n;
  }
  return plan.workers() >= kPackMinWorkers ? kPackWorkersPerWarp : 1;
}

// Lanes per worker when several workers share a warp: Bp = the next power of two >= B, at least
// kWarp / the limit (a power of two divides the warp, so no worker straddles two warps); 0 when
// not packed (B > 16, or a limit of 1), for rows_by_batch's whole warps.
inline int64_t planned_pull_lanes(const WorkPlan& plan, int64_t B) {
  if (B > kWarp / 2) return 0;
  const int64_t limit = planned_pull_pack_limit(plan);
  int64_t lanes = 1;
  while (lanes < B || lanes * limit < kWarp) lanes *= 2;
  return lanes < kWarp ? lanes : 0;
}

// The launch of both passes (the configuration launch_plan() reports: csrc/cuda/launch_plan.cuh).
// Threads are numbered x-fastest, so with block.x = lanes < 32 a warp holds 32 / lanes consecutive
// workers and thread_row/thread_col need no change; no warp primitive is involved, so the CPU
// emulation stays faithful.
inline LaunchConfig planned_pull_config(const WorkPlan& plan, int64_t B) {
  const int64_t lanes = planned_pull_lanes(plan, B);
  if (lanes == 0) return rows_by_batch(plan.workers(), B);
  LaunchConfig c;
  c.block.x = lanes;
  c.block.y = kThreadsPerBlock / lanes;
  c.grid.x = std::max<int64_t>(1, ceil_div(plan.workers(), c.block.y));
  return c;
}

// Runs the planned pull of k branches over `ix` into `finish`; xs, rs: the branches' [*, B] data.
template <typename L, typename scalar_t, typename acc_t, typename index_t, int KMax, typename Finish>
void launch_planned_pull(const PullPtrs<index_t>& ix, int64_t rows, const Ptrs<const scalar_t*>& xs,
                         const Ptrs<const scalar_t*>& rs, int64_t k, int64_t B, const at::TensorOptions& options,
                         const Finish& finish, int32_t* err) {
  const WorkPlan plan{rows, ix.facts};
  if (plan.workers() == 0 || B == 0) return;
  // Partials of every worker (only split rows' slots are written and read): memory in proportion
  // to the workers, 2 * k * B accumulators each.
  const at::Tensor carry =
      at::empty({plan.workers() * 2 * k * B}, options.dtype(c10::CppTypeToScalarType<acc_t>::value));
  const LaunchConfig config = planned_pull_config(plan, B);
  L::launch(config, PlannedPullKernel<scalar_t, acc_t, index_t, KMax, Finish>{
                        ix, plan, xs, rs, k, B, carry.data_ptr<acc_t>(), finish, err});
  L::launch(config, PlanFixupKernel<scalar_t, acc_t, index_t, KMax, Finish>{ix.ptr, plan, k, B,
                                                                           carry.data_ptr<acc_t>(), finish});
}

}  // namespace gpu
}  // namespace kgqa
