// GPU kernels and host code of follow_push: follow from a sparse frontier, one thread per fact
// leaving it (the plan below).
//
// The kernels are functors: operator()(thread, grid_stride) is the body of one thread, plain host
// C++ as well, so the tests run the real grids on the CPU (launch.h: HostLauncher). The host code
// (checks, allocation, launch configuration) is written once over a Launcher L: csrc/cuda/ops.cu
// instantiates it with the real CUDA launch, csrc/emulation/ops.cpp with the CPU emulation. Unlike
// the other ops, these read two sizes back from the device (the frontier's items and runs: they
// depend on its values), so a call synchronises once per size (and cannot be captured in a CUDA
// graph).
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/zeros.h>

#include <algorithm>

#include <tuple>
#include <vector>

#include "../checks.h"
#include "../tnorm.h"
#include "launch.h"

namespace kgqa {
namespace gpu {

// The frontier as a kernel reads it: example b's entries are ids[ptr[b]:ptr[b+1]]. The host does not
// check it on the GPU (that would read device memory: a synchronisation per call), so the kernels
// check every offset and id they read (csrc/bounds.h).
struct Seeds {
  const int64_t* ptr;
  const int64_t* ids;
  int64_t num_ids, E;
  // Entries [k0, k1) of example b, or the error code of ptr.
  KGQA_HD int32_t bad_example(int64_t b, int64_t& k0, int64_t& k1) const {
    const int64_t a = ptr[b], e = ptr[b + 1];
    if (a < 0 || a > e || e > num_ids) return int32_t(BAD_FRONTIER_PTR);
    k0 = a;
    k1 = e;
    return 0;
  }
  KGQA_HD int32_t bad_id(int64_t s) const { return in_range(s, E) ? 0 : int32_t(BAD_FRONTIER_IDS); }
};

// The push's work plan. Pushing one thread per example gave a seed that is a hub (an entity with
// a large share of the KB's facts) to one thread, which walked all its facts while the GPU idled.
// Here every fact leaving the frontier is an item of its own, and the sums run on the merge path
// of csrc/work_plan.h, so no thread reads more than PLAN_ITEMS terms whatever the frontier holds:
//  1. PushEntriesKernel: per frontier entry, its example and the number of facts leaving its seed;
//  2. item_ptr = the running sum of those counts (the items of entry j: item_ptr[j] ..);
//  3. PushExpandKernel: per item, the fact's term and the output element it adds into (its key);
//  4. the keys sorted, stably: the terms of one output element, contiguous and in frontier and fact
//     order (the order of the CPU push), form a row;
//  5. PlannedSegmentSum + SegmentFixup: the rows summed on the merge path, split rows combined in
//     worker order, each output element written once.
// No atomics; the result depends on the frontier and PLAN_ITEMS only, so it is bitwise repeatable.
// The sizes of steps 3-5 depend on the frontier's values: the host reads two counts (T, the items,
// and the number of rows), a synchronisation per call, where the pull needs none.

// Step 1, thread per entry j: entry_b[j], the example whose frontier holds j (B when none does),
// and count[j], the facts leaving ids[j] (0 for an entry outside every example, or one whose id or
// segment is out of range, which is reported). Threads j < B also check example j's offsets.
template <typename index_t>
struct PushEntriesKernel {
  PullPtrs<index_t> ix;
  Seeds seeds;
  int64_t B;
  int64_t* entry_b;
  int64_t* count;
  int32_t* err;
  KGQA_HD void operator()(const Thread& t, int64_t stride) const {
    const int64_t n = seeds.num_ids > B ? seeds.num_ids : B;
    for (int64_t j = grid_first(t); j < n; j += stride) {
      if (j < B) {
        int64_t k0 = 0, k1 = 0;
        if (const int32_t bad = seeds.bad_example(j, k0, k1)) report_bad_value(err, bad);
      }
      if (j >= seeds.num_ids) continue;
      // The number of examples whose frontier ends at or before j: j's example when ptr is sorted
      // (a corrupt ptr is reported above; this stays in [0, B] whatever it holds).
      int64_t lo = 0, hi = B;
      while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (seeds.ptr[mid + 1] <= j) {
          lo = mid + 1;
        } else {
          hi = mid;
        }
      }
      int64_t c = 0;
      if (lo < B && seeds.ptr[lo] <= j) {
        const int64_t s = seeds.ids[j];
        if (const int32_t bad = seeds.bad_id(s) ? seeds.bad_id(s) : ix.bad_segment(ix.ptr[s], ix.ptr[s + 1])) {
          report_bad_value(err, bad);
        } else {
          c = ix.ptr[s + 1] - ix.ptr[s];
        }
      }
      entry_b[j] = c > 0 ? lo : B;
      count[j] = c;
    }
  }
};

// The item i of the frontier's facts: entry j, its example b and its fact f, or false (reported)
// when the fact's ids are out of range.
template <typename index_t>
struct PushItems {
  PullPtrs<index_t> ix;
  const int64_t* ids;
  const int64_t* entry_b;
  const int64_t* item_ptr;  // [entries + 1]
  int64_t entries;
  KGQA_HD bool find(int64_t i, int64_t& j, int64_t& b, int64_t& f, int32_t* err) const {
    int64_t lo = 0, hi = entries;  // the last j with item_ptr[j] <= i (skips entries without facts)
    while (hi - lo > 1) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (item_ptr[mid] <= i) {
        lo = mid;
      } else {
        hi = mid;
      }
    }
    j = lo;
    b = entry_b[j];
    f = ix.ptr[ids[j]] + (i - item_ptr[j]);
    if (const int32_t bad = ix.bad_fact(f)) {
      report_bad_value(err, bad);
      return false;
    }
    return true;
  }
};

// Step 3, thread per item: Terms writes item i's term(s) and key(s) from its entry j, example b
// and fact f, or zeros (Terms::skip) for an item whose fact's ids are out of range (reported).
template <typename index_t, typename Terms>
struct PushExpandKernel {
  PushItems<index_t> items;
  Terms terms;
  int64_t T;
  int32_t* err;
  KGQA_HD void operator()(const Thread& t, int64_t stride) const {
    for (int64_t i = grid_first(t); i < T; i += stride) {
      int64_t j = 0, b = 0, f = 0;
      if (items.find(i, j, b, f, err)) {
        terms(i, j, b, f, items.ix);
      } else {
        terms.skip(i);
      }
    }
  }
};

// follow_push's items: key[i] = the output element (col * B + b) and term[i] = r * (w * x), the
// term of every follow kernel.
template <typename scalar_t, typename acc_t>
struct PushTerms {
  const scalar_t* vals;
  const scalar_t* r;
  int64_t B;
  int64_t* key;
  acc_t* term;
  template <typename index_t>
  KGQA_HD void operator()(int64_t i, int64_t j, int64_t b, int64_t f, const PullPtrs<index_t>& ix) const {
    const acc_t v = acc_t(vals[j]);
    key[i] = int64_t(ix.col[f]) * B + b;
    term[i] = acc_t(r[int64_t(ix.rel[f]) * B + b]) * (ix.weight ? acc_t(ix.weight[f]) * v : v);
  }
  KGQA_HD void skip(int64_t i) const {
    key[i] = 0;
    term[i] = acc_t(0);
  }
};

// follow_push_backward's items, with wg = w * grad[col, b]: dv[i] = r * wg (a term of d vals[j]),
// dr_key[i] = rel * B + b and dr_term[i] = x * wg (a term of dr[rel, b]).
template <typename scalar_t, typename acc_t>
struct PushBackwardTerms {
  const scalar_t* vals;
  const scalar_t* r;
  const scalar_t* grad;
  int64_t B;
  acc_t* dv;
  int64_t* dr_key;
  acc_t* dr_term;
  template <typename index_t>
  KGQA_HD void operator()(int64_t i, int64_t j, int64_t b, int64_t f, const PullPtrs<index_t>& ix) const {
    const int64_t p = ix.rel[f];
    const acc_t g = acc_t(grad[int64_t(ix.col[f]) * B + b]);
    const acc_t wg = ix.weight ? acc_t(ix.weight[f]) * g : g;
    dv[i] = acc_t(r[p * B + b]) * wg;
    dr_key[i] = p * B + b;
    dr_term[i] = acc_t(vals[j]) * wg;
  }
  KGQA_HD void skip(int64_t i) const {
    dv[i] = dr_term[i] = acc_t(0);
    dr_key[i] = 0;
  }
};

// Step 5, thread per worker of the merge path over rows (ptr) and terms: out[dest(r)] = the sum of
// row r's terms from zero in order, for the rows whole in the worker; partials (head, tail: slots
// 0, 1 of carry[2 * w ..]) for the others, as in PlannedPullKernel. dest(r) = key[ptr[r]] (the
// sorted keys: a row is a run of equal keys), or r when key is null.
template <typename acc_t>
struct PlannedSegmentSum {
  const int64_t* ptr;
  WorkPlan plan;
  const acc_t* terms;
  const int64_t* key;
  acc_t* carry;
  acc_t* out;
  KGQA_HD void operator()(const Thread& t, int64_t stride) const {
    for (int64_t w = grid_first(t); w < plan.workers(); w += stride) {
      const WorkerSpan span = plan.span(ptr, w);
      const int64_t last = span.last_row(plan.rows);
      for (int64_t r = span.begin.row; r <= last; ++r) {
        const int64_t seg_begin = ptr[r];
        acc_t sum = acc_t(0);
        for (int64_t i = span.first_fact(seg_begin), i1 = span.last_fact(ptr[r + 1]); i < i1; ++i) sum += terms[i];
        if (span.starts_here(r, seg_begin) && span.ends_here(r)) {
          out[key ? key[seg_begin] : r] = sum;
        } else {
          carry[2 * w + (span.ends_here(r) ? 0 : 1)] = sum;
        }
      }
    }
  }
};

// Step 5's second pass: the worker that ends a split row sums its partials in worker order.
template <typename acc_t>
struct SegmentFixup {
  const int64_t* ptr;
  WorkPlan plan;
  const int64_t* key;
  const acc_t* carry;
  acc_t* out;
  KGQA_HD void operator()(const Thread& t, int64_t stride) const {
    for (int64_t w = grid_first(t); w < plan.workers(); w += stride) {
      const WorkerSpan span = plan.span(ptr, w);
      const int64_t first = plan.fixup_first(ptr, span, w);
      if (first < 0) continue;
      acc_t sum = acc_t(0);
      for (int64_t v = first; v < w; ++v) sum += carry[2 * v + 1];
      sum += carry[2 * w];
      const int64_t r = span.begin.row;
      out[key ? key[ptr[r]] : r] = sum;
    }
  }
};

// Step 5 over rows given by ptr [rows + 1] (key: as PlannedSegmentSum) into out.
template <typename L, typename acc_t>
void planned_segment_sum(const at::Tensor& ptr, const at::Tensor& terms, const int64_t* key, acc_t* out) {
  const WorkPlan plan{ptr.numel() - 1, terms.numel()};
  if (plan.workers() == 0) return;
  const at::Tensor carry = at::empty({2 * plan.workers()}, terms.options());
  const LaunchConfig config = elementwise(plan.workers());
  L::launch(config, PlannedSegmentSum<acc_t>{ptr.data_ptr<int64_t>(), plan, terms.data_ptr<acc_t>(), key,
                                             carry.data_ptr<acc_t>(), out});
  L::launch(config, SegmentFixup<acc_t>{ptr.data_ptr<int64_t>(), plan, key, carry.data_ptr<acc_t>(), out});
}

// Steps 4 and 5 for terms keyed by output element: out[k] += the terms of key k (out: zeros).
template <typename L, typename acc_t>
void sum_by_key(const at::Tensor& keys, const at::Tensor& terms, acc_t* out) {
  if (keys.numel() == 0) return;
  at::Tensor sorted, perm;
  std::tie(sorted, perm) = at::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  const at::Tensor in_order = terms.index_select(0, perm);
  const int64_t T = keys.numel();
  // Row starts: 0 and every position whose key differs from the one before; then the end.
  const at::Tensor starts = at::nonzero(sorted.slice(0, 1).ne(sorted.slice(0, 0, T - 1))).view(-1).add(1);
  const at::Tensor ptr = at::cat({at::zeros({1}, starts.options()), starts, at::full({1}, T, starts.options())});
  planned_segment_sum<L, acc_t>(ptr, in_order, sorted.data_ptr<int64_t>(), out);
}

// Steps 1 and 2: (entry_b, item_ptr) of the frontier, and T, its items (read on the host).
template <typename L, typename index_t>
std::tuple<at::Tensor, at::Tensor, int64_t> push_items(const PullPtrs<index_t>& ix, const Seeds& seeds, int64_t B,
                                                       const at::Tensor& ids, int32_t* err) {
  const auto options = ids.options();
  at::Tensor entry_b = at::empty({seeds.num_ids}, options), count = at::empty({seeds.num_ids}, options);
  L::launch(elementwise(std::max(seeds.num_ids, B)), PushEntriesKernel<index_t>{
      ix, seeds, B, entry_b.data_ptr<int64_t>(), count.data_ptr<int64_t>(), err});
  const at::Tensor item_ptr = at::cat({at::zeros({1}, options), count.cumsum(0)});
  return {entry_b, item_ptr, item_ptr[seeds.num_ids].item<int64_t>()};
}

template <typename L>
at::Tensor follow_push_impl(const at::Tensor& ptr_in, const at::Tensor& ids_in, const at::Tensor& vals_in,
                            const at::Tensor& r_in, at::TensorList kb, bool inverse) {
  const Frontier fr = check_frontier("follow_push", ptr_in, ids_in, vals_in, r_in, kb);
  typename L::Guard guard(kb_device(kb));
  const at::Tensor &ptr = fr.ptr, &ids = fr.ids, &vals = fr.vals, &r = fr.r;
  const int64_t E = kb_num_entities(kb), B = fr.B;
  at::Tensor y;
  typename L::Errors errors("follow_push", kb_device(kb));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, vals.scalar_type(), "follow_push", [&] {
    AT_DISPATCH_INDEX_TYPES(kb[SUBJ_OBJ].scalar_type(), "follow_push", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      at::Tensor acc = at::zeros({E, B}, vals.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
      if (B > 0 && ids.numel() > 0) {
        const PullPtrs<index_t> ix = pull_ptrs<index_t>(pull_index(kb, !inverse));
        const Seeds seeds{ptr.data_ptr<int64_t>(), ids.data_ptr<int64_t>(), ids.numel(), E};
        at::Tensor entry_b, item_ptr;
        int64_t T = 0;
        std::tie(entry_b, item_ptr, T) = push_items<L>(ix, seeds, B, ids, errors.flag());
        if (T > 0) {
          at::Tensor key = at::empty({T}, ids.options()), term = at::empty({T}, acc.options());
          L::launch(elementwise(T), PushExpandKernel<index_t, PushTerms<scalar_t, acc_t>>{
              {ix, seeds.ids, entry_b.data_ptr<int64_t>(), item_ptr.data_ptr<int64_t>(), ids.numel()},
              {vals.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(), B, key.data_ptr<int64_t>(), term.data_ptr<acc_t>()},
              T, errors.flag()});
          sum_by_key<L, acc_t>(key, term, acc.data_ptr<acc_t>());
        }
      }
      y = acc.scalar_type() == vals.scalar_type() ? acc : acc.to(vals.scalar_type());
    });
  });
  errors.done();
  return y;
}

template <typename L>
std::tuple<at::Tensor, at::Tensor> follow_push_backward_impl(const at::Tensor& grad_in, const at::Tensor& ptr_in,
                                                             const at::Tensor& ids_in, const at::Tensor& vals_in,
                                                             const at::Tensor& r_in, at::TensorList kb, bool inverse) {
  const Frontier fr = check_frontier("follow_push_backward", ptr_in, ids_in, vals_in, r_in, kb);
  typename L::Guard guard(kb_device(kb));
  const int64_t R = kb_num_relations(kb), B = fr.B;
  const at::Tensor grad = check_frontier_grad("follow_push_backward", grad_in, fr, kb);
  const at::Tensor &ptr = fr.ptr, &ids = fr.ids, &vals = fr.vals, &r = fr.r;
  at::Tensor dvals, dr;
  typename L::Errors errors("follow_push_backward", kb_device(kb));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, vals.scalar_type(), "follow_push_backward", [&] {
    AT_DISPATCH_INDEX_TYPES(kb[SUBJ_OBJ].scalar_type(), "follow_push_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const auto acc_options = vals.options().dtype(c10::CppTypeToScalarType<acc_t>::value);
      at::Tensor dr_acc = at::zeros({R, B}, acc_options);
      at::Tensor dv_acc = at::zeros({ids.numel()}, acc_options);
      if (B > 0 && ids.numel() > 0) {
        const PullPtrs<index_t> ix = pull_ptrs<index_t>(pull_index(kb, !inverse));
        const Seeds seeds{ptr.data_ptr<int64_t>(), ids.data_ptr<int64_t>(), ids.numel(), kb_num_entities(kb)};
        at::Tensor entry_b, item_ptr;
        int64_t T = 0;
        std::tie(entry_b, item_ptr, T) = push_items<L>(ix, seeds, B, ids, errors.flag());
        if (T > 0) {
          at::Tensor dv = at::empty({T}, acc_options), dr_term = at::empty({T}, acc_options);
          at::Tensor dr_key = at::empty({T}, ids.options());
          L::launch(elementwise(T), PushExpandKernel<index_t, PushBackwardTerms<scalar_t, acc_t>>{
              {ix, seeds.ids, entry_b.data_ptr<int64_t>(), item_ptr.data_ptr<int64_t>(), ids.numel()},
              {vals.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), B, dv.data_ptr<acc_t>(),
               dr_key.data_ptr<int64_t>(), dr_term.data_ptr<acc_t>()},
              T, errors.flag()});
          // d vals: the rows are the entries (entry j's terms are items item_ptr[j] ..).
          planned_segment_sum<L, acc_t>(item_ptr, dv, nullptr, dv_acc.data_ptr<acc_t>());
          sum_by_key<L, acc_t>(dr_key, dr_term, dr_acc.data_ptr<acc_t>());
        }
      }
      dvals = dv_acc.to(vals.scalar_type());
      dr = dr_acc.scalar_type() == vals.scalar_type() ? dr_acc : dr_acc.to(vals.scalar_type());
    });
  });
  errors.done();
  return {dvals, dr};
}

}  // namespace gpu
}  // namespace kgqa

#define KGQA_REGISTER_GPU_FOLLOW_PUSH(m, Launcher)                                  \
  m.impl("follow_push", &kgqa::gpu::follow_push_impl<Launcher>);                   \
  m.impl("follow_push_backward", &kgqa::gpu::follow_push_backward_impl<Launcher>);
