// Row logic shared by every CPU pass over a PullIndex (follow, its dx, follow_intersect), and dr's
// chunk sum (follow_backward_r).
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "../bounds.h"
#include "../kb_layout.h"

// The namespace of this copy of the row logic: cpu, or cpu_avx2 where avx2.cpp compiles it again
// for AVX2 (csrc/cpu/isa.h). Each copy has its own names, so the linker never mixes them.
#ifndef KGQA_CPU_NS
#define KGQA_CPU_NS cpu
#endif

// Whether the loops check the ids they read (csrc/bounds.h). Always 1 in the package:
// experiments/bounds_ab.py also compiles these loops with 0, to measure what the checks cost.
#ifndef KGQA_BOUNDS_CHECKS
#define KGQA_BOUNDS_CHECKS 1
#endif

namespace kgqa {
namespace KGQA_CPU_NS {

// Batch columns handled per pass over a segment: the accumulators stay in L1 and the inner
// loops are long enough to vectorise. Wider batches loop over tiles (indices are re-read,
// which is cheap next to the rows of x).
constexpr int64_t kBatchTile = 128;

// Facts ahead whose rows are requested early (dr's chunk sum, follow_intersect and its backward).
// Out-of-order execution alone overlaps too few of the gathers' cache and TLB misses once the rows
// do not fit in cache: on 10M-fact KBs with B = 64 fp32, dr took 1,151 ms without and 562 with
// (zipf-0.8), 769 and 355 (zipf-1.2), 1,373 and 481 (zipf-s1.2-uniform); 8 to 64 ahead gave about
// the same. The plain pulls gained nothing from it (zipf-0.8 forward 1,499 and 1,437 ms, 931 and
// 954 in another process; experiments/prefetch_distance.py), nor with x on huge pages (forward
// 968 ms at 0 ahead, 945-988 at 8-32; dx 848, 850-885: --huge-pages), so pull_row prefetches only
// when a caller asks. follow_intersect's backward measured twice the time of two plain pulls without it,
// and 0.7x with it.
constexpr int64_t kPrefetchFacts = 16;

// in_range(v, n) (csrc/bounds.h), the check every id read in these loops gets.
inline bool id_ok(int64_t v, int64_t n) { return !KGQA_BOUNDS_CHECKS || in_range(v, n); }

inline void prefetch_span(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off);
}

// Requests columns [b0, b0 + bt) of the row of x that fact `ahead` reads, if that fact exists and
// its id is in range: a prefetch never faults, but no address is formed from an id out of bounds.
template <typename scalar_t, typename index_t>
inline void prefetch_fact(const PullPtrs<index_t>& ix, int64_t ahead, const scalar_t* x, int64_t b0, int64_t bt,
                          int64_t B) {
  if (ahead >= ix.facts) return;
  const int64_t c = ix.col[ahead];
  if (id_ok(c, ix.cols)) prefetch_span(x + c * B + b0, bt * int64_t(sizeof(scalar_t)));
}

// Whether any of ids[begin, end) lies outside [0, n): compares ORed together, without a branch per
// id. Compared in the ids' own width, unsigned (a negative id wraps past n), so the loop vectorises
// (GCC left the int64 compares of an int32 id scalar); where n does not fit that width, every
// non-negative id is below it.
template <typename index_t>
inline bool any_out_of_range(const index_t* __restrict__ ids, int64_t begin, int64_t end, int64_t n) {
  using uindex_t = std::make_unsigned_t<index_t>;
  if (uint64_t(n) > uint64_t(std::numeric_limits<uindex_t>::max())) {
    index_t low = 0;
    for (int64_t f = begin; f < end; ++f) low |= ids[f];
    return low < 0;  // the sign bit survives the OR
  }
  const uindex_t limit = uindex_t(n);
  uindex_t bad = 0;
  for (int64_t f = begin; f < end; ++f) bad |= uindex_t(uindex_t(ids[f]) >= limit);
  return bad != 0;
}

// PullPtrs::bad_fact over facts [begin, end) without a branch per fact.
template <typename index_t>
inline int32_t bad_facts(const PullPtrs<index_t>& ix, int64_t begin, int64_t end) {
  if (any_out_of_range(ix.col, begin, end, ix.cols)) return int32_t(ix.ptr_slot + 2);
  if (any_out_of_range(ix.rel, begin, end, ix.rels)) return int32_t(ix.ptr_slot + 3);
  return 0;
}

// True when every v[0:n] is finite. x - x is 0 for a finite x and NaN for Inf or NaN; an OR of
// compares vectorises, where a float sum (the probe this replaced) is a serial chain of adds.
template <typename acc_t>
inline bool all_finite(const acc_t* __restrict__ v, int64_t n) {
  int bad = 0;
  for (int64_t j = 0; j < n; ++j) bad |= (v[j] - v[j]) != acc_t(0);
  return bad == 0;
}

// Adds the terms of facts [begin, end) into acc[0:bt], run by run (a run: facts of one relation,
// adjacent since a segment is sorted by relation). A run of several facts is summed first,
// sum(w * x), and multiplied by r once; a single fact is added as r * (w * x). With `exact`, a run
// whose sum is not finite is added term by term instead. Each fact requests the row of the fact
// `ahead` places later (0: none), across rows: a segment holds few facts on most KBs. Sets `summed`
// when any run was summed. Every id is checked where it is read, before it forms an address: a
// relation once per run, an entity once per fact (one compare and a branch that is never taken on
// a valid KB); the first id out of range stops the sum and its error code (csrc/bounds.h) is
// returned, else 0. Counted (experiments/bounds_instructions.py; docs/results.md, "Bounds checks
// cost"), this build's pulls execute about half (0.45-0.49x) the instructions of the same source
// built without checks, whose loops GCC compiles otherwise (2x the data accesses, the same cache
// misses). A branch-free pass over the row's ids before the sums instead (bad_facts) got that
// other code too: 1.05-1.06x the unchecked build, 2.3x this one.
template <typename scalar_t, typename index_t, bool weighted, bool exact, int64_t ahead>
inline int32_t add_runs(at::opmath_type<scalar_t>* __restrict__ acc, int64_t begin, int64_t end, int64_t b0,
                        int64_t bt, int64_t B, const PullPtrs<index_t>& ix, const scalar_t* x, const scalar_t* r,
                        bool& summed) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t* col = ix.col;
  const index_t* rel = ix.rel;
  const float* w = ix.weight;
  const int64_t cols = ix.cols;
  acc_t run[kBatchTile];
  int64_t f = begin;
  while (f < end) {
    const index_t p = rel[f];
    if (!id_ok(int64_t(p), ix.rels)) return int32_t(ix.ptr_slot + 3);
    int64_t run_end = f + 1;
    while (run_end < end && rel[run_end] == p) ++run_end;
    const scalar_t* __restrict__ rp = r + int64_t(p) * B + b0;
    if (run_end > f + 1) {
      summed = true;
      for (int64_t j = 0; j < bt; ++j) run[j] = acc_t(0);
      for (int64_t g = f; g < run_end; ++g) {
        if (ahead > 0) prefetch_fact(ix, g + ahead, x, b0, bt, B);
        const int64_t c = col[g];
        if (!id_ok(c, cols)) return int32_t(ix.ptr_slot + 2);
        const scalar_t* __restrict__ xs = x + c * B + b0;
        const acc_t wf = weighted ? acc_t(w[g]) : acc_t(1);
        for (int64_t j = 0; j < bt; ++j) run[j] += weighted ? wf * acc_t(xs[j]) : acc_t(xs[j]);
      }
      if (!exact || all_finite(run, bt)) {
        for (int64_t j = 0; j < bt; ++j) acc[j] += acc_t(rp[j]) * run[j];
        f = run_end;
        continue;
      }
    }
    for (int64_t g = f; g < run_end; ++g) {  // term by term: a single fact, or a run whose sum is not finite
      if (ahead > 0) prefetch_fact(ix, g + ahead, x, b0, bt, B);
      const int64_t c = col[g];
      if (!id_ok(c, cols)) return int32_t(ix.ptr_slot + 2);
      const scalar_t* __restrict__ xs = x + c * B + b0;
      const acc_t wf = weighted ? acc_t(w[g]) : acc_t(1);
      for (int64_t j = 0; j < bt; ++j) acc[j] += acc_t(rp[j]) * (weighted ? wf * acc_t(xs[j]) : acc_t(xs[j]));
    }
    f = run_end;
  }
  return 0;
}

// 0 when segment `row`'s bounds and every id in it can be read, else the error code of the first
// value out of range (csrc/bounds.h). One branch-free pass over the ids, for a caller that reads
// a row's ids itself (follow_intersect's backward); pull_row checks its own.
template <typename index_t>
inline int32_t check_row(const PullPtrs<index_t>& ix, int64_t row) {
  if (!KGQA_BOUNDS_CHECKS) return 0;
  const int64_t begin = ix.ptr[row], end = ix.ptr[row + 1];
  if (const int32_t bad = ix.bad_segment(begin, end)) return bad;
  return bad_facts(ix, begin, end);
}

// 0 when segment `row`'s row pointers can be read as a range of facts, else their error code.
template <typename index_t>
inline int32_t check_segment(const PullPtrs<index_t>& ix, int64_t row) {
  if (!KGQA_BOUNDS_CHECKS) return 0;
  return ix.bad_segment(ix.ptr[row], ix.ptr[row + 1]);
}

// acc[0:bt] = sum over facts f in segment `row` (its bounds checked by check_segment) of
// r[rel[f], b] * (w[f] * x[col[f], b]); returns 0, or the error code of the first id out of range
// (add_runs checks them as it reads them; acc is then incomplete). The terms of every follow
// kernel (Triton, CUDA, the push, the reference) are r * (w * x) added in fact order; here a run
// of one relation is summed first and multiplied by r once (add_runs): one multiply-add per fact,
// like a plain SpMM. Forming each term instead cost 13% (follow) to 29% (follow_intersect) on the
// hub-heavy 10M-fact KB (experiments/bounds_cost.py), since a hub's rows are long runs of one
// relation. The two orders agree to rounding; where they would not agree on Inf or NaN (a run's
// sum overflows where the terms do not: two x = 3e38 through r = 0.5; or an Inf or NaN in x) that
// run's sum is not finite, and the run is added term by term, so non-finite results come out
// exactly as the other kernels' (docs/ops.md, one order of operations). A run's sum that is not
// finite leaves the row's sum not finite (r * Inf is Inf or NaN, and Inf or NaN plus anything stays
// so), so one check per row finds every such run, and only such a row is summed again with a check
// per run. With a check per run the pull measured 8-11% slower than before the checks on the
// hub-heavy KB, where most runs are short; with one per row, at most 3.3% there
// (experiments/bounds_cost.py; docs/results.md has the other KB's numbers).
template <typename scalar_t, typename index_t, bool weighted, int64_t ahead>
inline int32_t pull_row(at::opmath_type<scalar_t>* __restrict__ acc, int64_t row, int64_t b0, int64_t bt, int64_t B,
                        const PullPtrs<index_t>& ix, const scalar_t* x, const scalar_t* r) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t begin = ix.ptr[row], end = ix.ptr[row + 1];
  for (int64_t j = 0; j < bt; ++j) acc[j] = acc_t(0);
  bool summed = false;
  if (const int32_t bad = add_runs<scalar_t, index_t, weighted, false, ahead>(acc, begin, end, b0, bt, B, ix, x, r,
                                                                              summed)) {
    return bad;
  }
  if (summed && !all_finite(acc, bt)) {
    for (int64_t j = 0; j < bt; ++j) acc[j] = acc_t(0);
    return add_runs<scalar_t, index_t, weighted, true, ahead>(acc, begin, end, b0, bt, B, ix, x, r, summed);
  }
  return 0;
}

// pull_row with the weighted branch resolved at compile time; `ahead`: the prefetch distance in
// facts, 0 (none) by default (kPrefetchFacts says why).
template <typename scalar_t, typename index_t, int64_t ahead = 0>
inline int32_t pull_row(at::opmath_type<scalar_t>* acc, int64_t row, int64_t b0, int64_t bt, int64_t B,
                        const PullPtrs<index_t>& ix, const scalar_t* x, const scalar_t* r) {
  if (ix.weight) return pull_row<scalar_t, index_t, true, ahead>(acc, row, b0, bt, B, ix, x, r);
  return pull_row<scalar_t, index_t, false, ahead>(acc, row, b0, bt, B, ix, x, r);
}

// The facts [begin, end) of one of dr's chunks (kb_layout.h: REL_CHUNK_PTR), ids < entities.
template <typename index_t>
struct ChunkFacts {
  const index_t* subj;
  const index_t* obj;
  const float* weight;  // nullptr when unweighted
  int64_t begin, end, entities;
};

// 0 when every subject and object of the chunk is an entity, else the error code of the first bad
// slot: one pass of compares ORed together, without a branch per fact (it vectorises). Before it,
// sum_chunk checked each id where it read it: four compares and branches per fact with the
// prefetch's. What the checks cost now, counted: docs/results.md, "Bounds checks cost".
template <typename index_t>
inline int32_t bad_chunk_ids(const ChunkFacts<index_t>& cf) {
  if (!KGQA_BOUNDS_CHECKS) return 0;
  if (any_out_of_range(cf.subj, cf.begin, cf.end, cf.entities)) return int32_t(REL_SUBJ + 1);
  if (any_out_of_range(cf.obj, cf.begin, cf.end, cf.entities)) return int32_t(REL_OBJ + 1);
  return 0;
}

// acc[0:bt] = sum over the chunk's facts f of a[subj[f], b] * (w[f] * b[obj[f], b]), in fact
// order: the one order of operations of dr (follow_backward_r; pull_row's terms with x and r's
// roles taken by the two gathered rows). Requests the two rows of the fact `ahead` places later.
// Returns 0, or the error code of a bad id (bad_chunk_ids, before any row is read).
template <typename scalar_t, typename index_t, int64_t ahead = kPrefetchFacts>
inline int32_t sum_chunk(at::opmath_type<scalar_t>* __restrict__ acc, const ChunkFacts<index_t>& cf,
                         const scalar_t* a, const scalar_t* b, int64_t b0, int64_t bt, int64_t B) {
  using acc_t = at::opmath_type<scalar_t>;
  if (const int32_t bad = bad_chunk_ids(cf)) return bad;
  for (int64_t j = 0; j < bt; ++j) acc[j] = acc_t(0);
  for (int64_t f = cf.begin; f < cf.end; ++f) {
    const int64_t s = cf.subj[f], o = cf.obj[f];
    if (ahead > 0 && f + ahead < cf.end) {
      const int64_t s_next = cf.subj[f + ahead], o_next = cf.obj[f + ahead];
      prefetch_span(a + s_next * B + b0, bt * int64_t(sizeof(scalar_t)));
      prefetch_span(b + o_next * B + b0, bt * int64_t(sizeof(scalar_t)));
    }
    const scalar_t* __restrict__ as = a + s * B + b0;
    const scalar_t* __restrict__ bo = b + o * B + b0;
    if (cf.weight) {
      const acc_t wf = acc_t(cf.weight[f]);
      for (int64_t j = 0; j < bt; ++j) acc[j] += acc_t(as[j]) * (wf * acc_t(bo[j]));
    } else {
      for (int64_t j = 0; j < bt; ++j) acc[j] += acc_t(as[j]) * acc_t(bo[j]);
    }
  }
  return 0;
}

// dr's second pass: out[p, b] (R x B, contiguous) = relation p's chunk partials (partial[c, b]) added
// in chunk order, fixed by the KB, so the result does not depend on the threads; a relation whose
// chunk entries are bad is reported and left unwritten.
template <typename scalar_t, typename acc_t>
inline void add_rel_partials(const RelChunks& rc, const acc_t* partial, int64_t B, scalar_t* out, BoundsFlag& flag) {
  at::parallel_for(0, rc.rels, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      if (const int32_t bad = rc.bad_relation(p)) {
        flag.report(bad);
        continue;
      }
      for (int64_t j = 0; j < B; ++j) {
        acc_t sum = acc_t(0);
        for (int64_t c = rc.chunk_ptr[p]; c < rc.chunk_ptr[p + 1]; ++c) sum += partial[c * B + j];
        out[p * B + j] = scalar_t(sum);
      }
    }
  });
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

}  // namespace KGQA_CPU_NS
}  // namespace kgqa
