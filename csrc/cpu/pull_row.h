// Row logic shared by every CPU pass over a PullIndex (follow, its dx, follow_intersect).
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../bounds.h"
#include "../kb_layout.h"

namespace kgqa {
namespace cpu {

// Batch columns handled per pass over a segment: the accumulators stay in L1 and the inner
// loops are long enough to vectorise. Wider batches loop over tiles (indices are re-read,
// which is cheap next to the rows of x).
constexpr int64_t kBatchTile = 128;

// Facts ahead whose rows are requested early (follow_intersect and its backward). Where the work
// per fact is long (k branches, tie counts, a division), out-of-order execution no longer overlaps
// the next facts' cache misses by itself: the backward measured twice the time of two plain pulls
// without it, and 0.7x with it.
constexpr int64_t kPrefetchFacts = 16;

inline void prefetch_span(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off);
}

// PullPtrs::bad_fact over facts [begin, end) without a branch per fact: an OR of the compares.
template <typename index_t>
inline int32_t bad_facts(const PullPtrs<index_t>& ix, int64_t begin, int64_t end) {
  const index_t* __restrict__ col = ix.col;
  const index_t* __restrict__ rel = ix.rel;
  const uint64_t cols = uint64_t(ix.cols), rels = uint64_t(ix.rels);
  bool bad_col = false, bad_rel = false;
  for (int64_t f = begin; f < end; ++f) {
    bad_col |= uint64_t(int64_t(col[f])) >= cols;
    bad_rel |= uint64_t(int64_t(rel[f])) >= rels;
  }
  return bad_col ? int32_t(ix.ptr_slot + 2) : bad_rel ? int32_t(ix.ptr_slot + 3) : 0;
}

// acc[0:bt] = sum over facts f in segment `row` of r[rel[f], b] * (w[f] * x[col[f], b]). The terms
// of every follow kernel (Triton, CUDA, the push, the reference) are r * (w * x) added in fact order;
// here facts within a segment are sorted by relation, and a run of one relation is summed first,
// sum(w * x), and multiplied by r once: one multiply-add per fact, like a plain SpMM. Forming each
// term instead cost 13% (follow) to 29% (follow_intersect) on the hub-heavy 10M-fact KB
// (experiments/bounds_cost.py), since a hub's rows are long runs of one relation. The two orders
// agree to rounding; where they would not agree on Inf or NaN (a run's sum overflows where the
// terms do not: two x = 3e38 through r = 0.5; or an Inf or NaN in x) the run's sum is not finite,
// and that run is added again term by term, so non-finite results come out exactly as the other
// kernels' (docs/ops.md, one order of operations). Returns 0, or the error code of the first value
// out of range (csrc/bounds.h), having read nothing out of bounds.
template <typename scalar_t, typename index_t, bool weighted>
inline int32_t pull_row(at::opmath_type<scalar_t>* __restrict__ acc, int64_t row, int64_t b0, int64_t bt, int64_t B,
                        const PullPtrs<index_t>& ix, const scalar_t* x, const scalar_t* r) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t* col = ix.col;
  const index_t* rel = ix.rel;
  const float* w = ix.weight;
  for (int64_t j = 0; j < bt; ++j) acc[j] = acc_t(0);
  const int64_t begin = ix.ptr[row], end = ix.ptr[row + 1];
  if (const int32_t bad = ix.bad_segment(begin, end)) return bad;
  // The segment's ids are checked in one branch-free pass first (it vectorises, and leaves them in
  // L1 for the sums), so the loops below have no check per fact.
  if (const int32_t bad = bad_facts(ix, begin, end)) return bad;
  acc_t run[kBatchTile];
  int64_t f = begin;
  while (f < end) {
    const index_t p = rel[f];
    int64_t run_end = f + 1;
    while (run_end < end && rel[run_end] == p) ++run_end;
    const scalar_t* __restrict__ rp = r + int64_t(p) * B + b0;
    bool finite = true;
    if (run_end > f + 1) {
      for (int64_t j = 0; j < bt; ++j) run[j] = acc_t(0);
      for (int64_t g = f; g < run_end; ++g) {
        const scalar_t* __restrict__ xs = x + int64_t(col[g]) * B + b0;
        const acc_t wf = weighted ? acc_t(w[g]) : acc_t(1);
        for (int64_t j = 0; j < bt; ++j) run[j] += weighted ? wf * acc_t(xs[j]) : acc_t(xs[j]);
      }
      acc_t probe = acc_t(0);  // NaN unless every run[j] is finite (Inf * 0 = NaN)
      for (int64_t j = 0; j < bt; ++j) probe += run[j] * acc_t(0);
      finite = probe == acc_t(0);
      if (finite) {
        for (int64_t j = 0; j < bt; ++j) acc[j] += acc_t(rp[j]) * run[j];
      }
    }
    if (run_end == f + 1 || !finite) {  // term by term: a single fact, or a run whose sum is not finite
      for (int64_t g = f; g < run_end; ++g) {
        const scalar_t* __restrict__ xs = x + int64_t(col[g]) * B + b0;
        const acc_t wf = weighted ? acc_t(w[g]) : acc_t(1);
        for (int64_t j = 0; j < bt; ++j) acc[j] += acc_t(rp[j]) * (weighted ? wf * acc_t(xs[j]) : acc_t(xs[j]));
      }
    }
    f = run_end;
  }
  return 0;
}

// pull_row with the weighted branch resolved at compile time.
template <typename scalar_t, typename index_t>
inline int32_t pull_row(at::opmath_type<scalar_t>* acc, int64_t row, int64_t b0, int64_t bt, int64_t B,
                        const PullPtrs<index_t>& ix, const scalar_t* x, const scalar_t* r) {
  if (ix.weight) return pull_row<scalar_t, index_t, true>(acc, row, b0, bt, B, ix, x, r);
  return pull_row<scalar_t, index_t, false>(acc, row, b0, bt, B, ix, x, r);
}

// Runs fn(i) for i in [0, n) on torch's threads, handing out items as threads become free: a
// thread slowed by a hub row or by another process on its core does not hold up the others (static
// splits did, measured on these shared 2-core machines). Which thread runs an item never changes
// what it computes, so results stay bitwise deterministic.
template <typename Fn>
inline void parallel_dynamic(int64_t n, const Fn& fn) {
#ifdef _OPENMP
  const int threads = at::get_num_threads();
  if (threads > 1 && n > 1 && !at::in_parallel_region()) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
#endif
  for (int64_t i = 0; i < n; ++i) fn(i);
}

// Runs fn(row_begin, row_end) over [0, rows) in parallel, cutting the rows where the work
// (facts + rows) is balanced: power-law KBs put most facts in a few rows, so equal row counts
// would leave threads idle. Each row is computed by exactly one call, so results do not depend
// on the number of threads.
template <typename Fn>
inline void parallel_over_segments(const int64_t* ptr, int64_t rows, Fn&& fn) {
  const int64_t work = ptr[rows] + rows;
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(rows, int64_t(at::get_num_threads()) * 32));
  std::vector<int64_t> cut(chunks + 1, rows);
  cut[0] = 0;
  for (int64_t c = 1; c < chunks; ++c) {
    const int64_t target = work / chunks * c;
    int64_t lo = cut[c - 1], hi = rows;  // first row whose start ptr[row] + row reaches target
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (ptr[mid] + mid < target) lo = mid + 1; else hi = mid;
    }
    cut[c] = lo;
  }
  parallel_dynamic(chunks, [&](int64_t c) {
    if (cut[c] < cut[c + 1]) fn(cut[c], cut[c + 1]);
  });
}

}  // namespace cpu
}  // namespace kgqa
