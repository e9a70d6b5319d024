// The work plan of every pull-shaped GPU kernel (CUDA here; kgqa_kernels/triton/work_plan.py is
// the same plan in Triton): a merge path over rows and facts, so that each worker (the batch lanes
// of one warp group, or one Triton program) reads at most PLAN_ITEMS facts whatever the KB's skew.
//
// A pull visits, row after row, row r's facts ptr[r] .. ptr[r+1]-1 and then row r's end: a path of
// rows + facts items, in which the end of row r is item ptr[r+1] + r and fact f of row r is item
// f + r. Worker w owns items [w * PLAN_ITEMS, (w + 1) * PLAN_ITEMS), so a hub row is split over
// many workers and short rows are packed several to a worker (Merrill & Garland, "Merge-based
// parallel sparse matrix-vector multiplication", SC 2016). Where a worker starts is found by a
// binary search over ptr in the kernel itself, so the plan is a function of the KB's row pointers
// and one constant: nothing is stored, nothing can go stale, and it does not depend on the GPU,
// the batch width or autotuning.
//
// The sums stay in fact order and bitwise repeatable without atomics: a worker writes each row that
// starts and ends inside its items directly (summed from zero in fact order); for a row it only
// starts or continues it writes a partial (its "tail"), and for a
// row that ends inside its items but started before, a "head". The fixup pass then gives each such
// row the sum, in worker order, of the tails of the workers before it and its own head: a split
// row is the sum of fixed chunks of its facts, combined in chunk order.
#pragma once

#include <cstdint>

#include "kb_layout.h"
#include "portability.h"

namespace kgqa {

// A position on the path: `row` row ends and `fact` facts come before it.
struct PathPos {
  int64_t row, fact;
};

// The position after the first d items (0 <= d <= rows + facts): row = the number of rows whose
// end comes before item d, the smallest r with r == rows or ptr[r + 1] + r >= d. It reads ptr[1]
// .. ptr[rows] only and returns 0 <= row <= min(d, rows) and 0 <= fact <= facts, whatever ptr holds
// (a corrupt ptr gives a wrong but in-bounds split, and each visited row's segment is checked).
KGQA_HD inline PathPos path_pos(const int64_t* ptr, int64_t rows, int64_t facts, int64_t d) {
  int64_t lo = d - facts > 0 ? d - facts : 0;
  int64_t hi = d < rows ? d : rows;
  if (lo > hi) lo = hi;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (ptr[mid + 1] + mid >= d) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return {lo, d - lo};
}

// The items of one worker: from `begin` (inclusive) to `end` (exclusive).
struct WorkerSpan {
  PathPos begin, end;
  // The rows the worker visits: begin.row .. last_row() inclusive (none when last_row() < begin.row).
  KGQA_HD int64_t last_row(int64_t rows) const { return end.row < rows ? end.row : rows - 1; }
  // The facts of row r (whose segment is [seg_begin, seg_end)) that this worker reads.
  KGQA_HD int64_t first_fact(int64_t seg_begin) const { return seg_begin > begin.fact ? seg_begin : begin.fact; }
  KGQA_HD int64_t last_fact(int64_t seg_end) const { return seg_end < end.fact ? seg_end : end.fact; }
  // Whether row r's sum is whole here (it starts and ends inside the worker's items); when not, the
  // worker writes r's partial to its head slot when r ends here, else to its tail slot.
  KGQA_HD bool starts_here(int64_t r, int64_t seg_begin) const { return r > begin.row || seg_begin >= begin.fact; }
  KGQA_HD bool ends_here(int64_t r) const { return r < end.row; }
};

// The plan of a pull over `rows` rows and `facts` facts.
struct WorkPlan {
  int64_t rows, facts;
  KGQA_HD int64_t items() const { return rows + facts; }
  KGQA_HD int64_t workers() const { return (items() + PLAN_ITEMS - 1) / PLAN_ITEMS; }
  KGQA_HD WorkerSpan span(const int64_t* ptr, int64_t w) const {
    const int64_t d0 = w * PLAN_ITEMS, d1 = d0 + PLAN_ITEMS < items() ? d0 + PLAN_ITEMS : items();
    return {path_pos(ptr, rows, facts, d0), path_pos(ptr, rows, facts, d1)};
  }
  // The split row worker w (of span `span`) completes in the fixup: its first row, when that row
  // ends in w but started in an earlier worker. Returns the worker holding the row's first item
  // (its first tail), or -1 when w completes no row. Clamped to [0, w] so that a corrupt ptr cannot
  // send the fixup out of bounds.
  KGQA_HD int64_t fixup_first(const int64_t* ptr, const WorkerSpan& span, int64_t w) const {
    const int64_t r = span.begin.row;
    if (r >= rows || !span.ends_here(r)) return -1;
    const int64_t seg_begin = ptr[r];
    if (span.starts_here(r, seg_begin)) return -1;
    const int64_t v = (seg_begin + r) / PLAN_ITEMS;
    return v < 0 ? 0 : (v > w ? w : v);
  }
};

}  // namespace kgqa

// kgqa_kernels::launch_plan (csrc/cuda/launch_plan.cuh): the fact steps each warp of a planned
// pull's launch takes (its workers in lockstep when several share a warp). Implemented for CUDA
// tensors and by the emulation (kgqa_kernels_emu) on the CPU.
#define KGQA_SCHEMAS_LAUNCH_PLAN(m) \
  m.def("launch_plan(Tensor[] kb, int batch, bool inverse) -> (Tensor work, Tensor fixup, int[] config)");
