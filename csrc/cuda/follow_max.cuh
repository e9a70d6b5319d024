// GPU kernels and host code of follow_max (follow's reduce="max" | "min") and its backward:
// functors run by a Launcher (csrc/cuda/launch.h: on the GPU, or on the CPU under emulation in the
// tests), with the passes and the order of operations of csrc/cpu/follow_max.cpp, so both give the
// same bits.
//
// One thread per (row, batch column) walks its row's facts: unlike follow's planned pull, a hub row
// is one thread's work (a work plan would need a second pass that merges partial maxima and their
// ties). Traffic per pass: T * (8 + B*s) reads of gathered rows, as the pull's.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <tuple>

#include "../bounds.h"
#include "../checks.h"
#include "../follow_max.h"
#include "follow.cuh"
#include "launch.h"

namespace kgqa {
namespace gpu {

// Pass over the rows of ix: the best term of each (row, b) and its ties. Forward: y = the best, 0
// for a row without facts. Backward (y null): best and the share grad / ties, in acc_t.
template <typename scalar_t, typename acc_t, typename index_t>
struct MaxRowKernel {
  PullPtrs<index_t> ix;
  int64_t rows, B;
  MaxTerm<acc_t> mt;
  const scalar_t* x;
  const scalar_t* r;
  scalar_t* y;
  const scalar_t* grad;
  acc_t* best_out;
  acc_t* share_out;
  int32_t* err;
  KGQA_HD void operator()(const Thread& t, int64_t) const {
    const int64_t row = thread_row(t), b = thread_col(t);
    if (row >= rows || b >= B) return;
    acc_t best = mt.start(), ties = acc_t(0);
    const int64_t begin = ix.ptr[row], end = ix.ptr[row + 1];
    int32_t bad = ix.bad_segment(begin, end);
    for (int64_t f = begin; !bad && f < end; ++f) {
      if ((bad = ix.bad_fact(f))) break;
      const acc_t w = ix.weight ? acc_t(ix.weight[f]) : acc_t(1);
      mt.take(mt.term(acc_t(x[int64_t(ix.col[f]) * B + b]), acc_t(r[int64_t(ix.rel[f]) * B + b]), w), best, ties);
    }
    if (bad) report_bad_value(err, bad);
    const int64_t e = row * B + b;
    if (y) {
      y[e] = begin == end ? scalar_t(0) : scalar_t(best);
    } else {
      best_out[e] = best;
      share_out[e] = MaxTerm<acc_t>::share(acc_t(grad[e]), ties);
    }
  }
};

// dx: the pull over the rows the forward reads (ix is the other direction's index: col = the
// fact's destination), adding each winning fact's share * d term / d x in fact order.
template <typename scalar_t, typename acc_t, typename index_t>
struct MaxDxKernel {
  PullPtrs<index_t> ix;
  int64_t rows, B;
  MaxTerm<acc_t> mt;
  const scalar_t* x;
  const scalar_t* r;
  const acc_t* best;
  const acc_t* share;
  scalar_t* dx;
  int32_t* err;
  KGQA_HD void operator()(const Thread& t, int64_t) const {
    const int64_t row = thread_row(t), b = thread_col(t);
    if (row >= rows || b >= B) return;
    acc_t acc = acc_t(0);
    const int64_t begin = ix.ptr[row], end = ix.ptr[row + 1];
    int32_t bad = ix.bad_segment(begin, end);
    const acc_t xv = acc_t(x[row * B + b]);
    for (int64_t f = begin; !bad && f < end; ++f) {
      if ((bad = ix.bad_fact(f))) break;
      const int64_t d = int64_t(ix.col[f]) * B + b;
      const acc_t rv = acc_t(r[int64_t(ix.rel[f]) * B + b]);
      const acc_t w = ix.weight ? acc_t(ix.weight[f]) : acc_t(1);
      if (mt.term(xv, rv, w) == best[d]) acc += share[d] * mt.d_x(rv, w);
    }
    if (bad) report_bad_value(err, bad);
    dx[row * B + b] = scalar_t(acc);
  }
};

// dr, pass 1: chunk c of the (p, s, o) order into partial[c, b] (pass 2 is follow's
// RelReduceKernel).
template <typename scalar_t, typename acc_t, typename index_t>
struct MaxRelChunkKernel {
  RelChunks rc;
  const index_t* subj;
  const index_t* obj;
  const float* weight;
  int64_t E, B;
  bool inverse;
  MaxTerm<acc_t> mt;
  const scalar_t* x;
  const scalar_t* r;
  const acc_t* best;
  const acc_t* share;
  acc_t* partial;
  int32_t* err;
  KGQA_HD void operator()(const Thread& t, int64_t) const {
    const int64_t c = thread_row(t), b = thread_col(t);
    if (c >= rc.chunks || b >= B) return;
    acc_t acc = acc_t(0);
    int64_t begin = 0, end = 0;
    int32_t bad = rc.chunk_facts(c, begin, end);
    const acc_t rv = bad ? acc_t(0) : acc_t(r[rc.chunk_rel[c] * B + b]);
    for (int64_t f = begin; !bad && f < end; ++f) {
      const int64_t s = subj[f], o = obj[f];
      if ((bad = RelChunks::bad_fact_ids(s, o, E))) break;
      const acc_t xv = acc_t(x[(inverse ? o : s) * B + b]);
      const int64_t d = (inverse ? s : o) * B + b;
      const acc_t w = weight ? acc_t(weight[f]) : acc_t(1);
      if (mt.term(xv, rv, w) == best[d]) acc += share[d] * mt.d_r(xv, w);
    }
    if (bad) report_bad_value(err, bad);
    partial[c * B + b] = acc;
  }
};

// dw: one thread per fact of the subject order (grid-stride), its subject by row_of_fact; the batch
// summed in order.
template <typename scalar_t, typename acc_t, typename index_t>
struct MaxFactKernel {
  PullPtrs<index_t> ix;  // grouped by subject: col = object
  int64_t rows, B;
  bool inverse;
  MaxTerm<acc_t> mt;
  const scalar_t* x;
  const scalar_t* r;
  const acc_t* best;
  const acc_t* share;
  scalar_t* dw;
  int32_t* err;
  KGQA_HD void operator()(const Thread& t, int64_t stride) const {
    const bool tiled = ix.tiles(rows);
    for (int64_t f = grid_first(t); f < ix.facts; f += stride) {
      const int64_t s = row_of_fact(ix, rows, f);
      const int32_t bad = !tiled || s < 0 ? int32_t(ix.ptr_slot + 1) : ix.bad_fact(f);
      if (bad) {
        report_bad_value(err, bad);
        dw[f] = scalar_t(0);
        continue;
      }
      const int64_t o = ix.col[f];
      const scalar_t* xs = x + (inverse ? o : s) * B;
      const scalar_t* rs = r + int64_t(ix.rel[f]) * B;
      const int64_t d = (inverse ? s : o) * B;
      const acc_t w = ix.weight ? acc_t(ix.weight[f]) : acc_t(1);
      acc_t sum = acc_t(0);
      for (int64_t j = 0; j < B; ++j) {
        const acc_t xv = acc_t(xs[j]), rv = acc_t(rs[j]);
        if (mt.term(xv, rv, w) == best[d + j]) sum += share[d + j] * mt.d_w(xv, rv);
      }
      dw[f] = scalar_t(sum);
    }
  }
};

template <typename L>
at::Tensor follow_max_impl(const at::Tensor& x_in, const at::Tensor& r_in, at::TensorList kb, bool inverse,
                           bool minimum, bool add) {
  check_kb(kb, "follow_max");
  typename L::Guard guard(kb_device(kb));
  const int64_t E = kb_num_entities(kb), R = kb_num_relations(kb);
  const PullOperands in = pull_operands("follow_max", kb, x_in, "x", E, r_in, "r", R);
  const int64_t B = in.B;
  at::Tensor y = at::empty({E, B}, in.a.options());
  if (B == 0 || E == 0) return y;
  const PullIndex idx = pull_index(kb, inverse);
  typename L::Errors errors("follow_max", kb_device(kb));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.a.scalar_type(), "follow_max", [&] {
    AT_DISPATCH_INDEX_TYPES(idx.col.scalar_type(), "follow_max", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      L::launch(rows_by_batch(E, B), MaxRowKernel<scalar_t, acc_t, index_t>{
          pull_ptrs<index_t>(idx), E, B, MaxTerm<acc_t>{minimum, add}, in.a.data_ptr<scalar_t>(),
          in.b.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), nullptr, nullptr, nullptr, errors.flag()});
    });
  });
  errors.done();
  return y;
}

template <typename L>
std::tuple<at::Tensor, at::Tensor, at::Tensor> follow_max_backward_impl(
    const at::Tensor& x_in, const at::Tensor& r_in, const at::Tensor& g_in, at::TensorList kb, bool inverse,
    bool minimum, bool add, bool need_w) {
  const char* op = "follow_max_backward";
  check_kb(kb, op);
  typename L::Guard guard(kb_device(kb));
  const int64_t E = kb_num_entities(kb), R = kb_num_relations(kb), facts = kb[SUBJ_OBJ].numel();
  const int64_t chunks = kb[REL_CHUNK_REL].numel();
  const PullOperands xr = pull_operands(op, kb, x_in, "x", E, r_in, "r", R);
  const PullOperands xg = pull_operands(op, kb, xr.a, "x", E, g_in, "grad", E);
  const at::Tensor &x = xr.a, &r = xr.b, &g = xg.b;
  const int64_t B = xr.B;
  at::Tensor dx = at::empty({E, B}, x.options());
  at::Tensor dr = at::empty({R, B}, x.options());
  at::Tensor dw = at::empty({need_w ? facts : 0}, x.options());
  if (B == 0) return {dx, dr, dw.zero_()};
  typename L::Errors errors(op, kb_device(kb));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "follow_max_backward", [&] {
    AT_DISPATCH_INDEX_TYPES(kb[OBJ_SUBJ].scalar_type(), "follow_max_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const MaxTerm<acc_t> mt{minimum, add};
      const auto acc_opts = x.options().dtype(c10::CppTypeToScalarType<acc_t>::value);
      at::Tensor best = at::empty({E, B}, acc_opts), share = at::empty({E, B}, acc_opts);
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* rp = r.data_ptr<scalar_t>();
      acc_t* bp = best.data_ptr<acc_t>();
      acc_t* sp = share.data_ptr<acc_t>();
      if (E > 0) {
        L::launch(rows_by_batch(E, B), MaxRowKernel<scalar_t, acc_t, index_t>{
            pull_ptrs<index_t>(pull_index(kb, inverse)), E, B, mt, xp, rp, nullptr, g.data_ptr<scalar_t>(), bp, sp,
            errors.flag()});
        L::launch(rows_by_batch(E, B), MaxDxKernel<scalar_t, acc_t, index_t>{
            pull_ptrs<index_t>(pull_index(kb, !inverse)), E, B, mt, xp, rp, bp, sp, dx.data_ptr<scalar_t>(),
            errors.flag()});
      }
      const RelChunks rc = rel_chunks(kb);
      at::Tensor partial = at::empty({chunks, B}, acc_opts);
      if (chunks > 0) {
        L::launch(rows_by_batch(chunks, B), MaxRelChunkKernel<scalar_t, acc_t, index_t>{
            rc, kb[REL_SUBJ].data_ptr<index_t>(), kb[REL_OBJ].data_ptr<index_t>(),
            kb[REL_WEIGHT].numel() > 0 ? kb[REL_WEIGHT].data_ptr<float>() : nullptr, E, B, inverse, mt, xp, rp, bp,
            sp, partial.data_ptr<acc_t>(), errors.flag()});
      }
      if (R > 0) {
        L::launch(rows_by_batch(R, B), RelReduceKernel<scalar_t, acc_t>{rc, partial.data_ptr<acc_t>(), B,
                                                                          dr.data_ptr<scalar_t>(), errors.flag()});
      }
      if (need_w && facts > 0) {
        L::launch(elementwise(facts), MaxFactKernel<scalar_t, acc_t, index_t>{
            pull_ptrs<index_t>(pull_index(kb, true)), E, B, inverse, mt, xp, rp, bp, sp, dw.data_ptr<scalar_t>(),
            errors.flag()});
      }
    });
  });
  errors.done();
  return {dx, dr, dw};
}

}  // namespace gpu
}  // namespace kgqa

#define KGQA_REGISTER_GPU_FOLLOW_MAX(m, Launcher)                      \
  m.impl("follow_max", &kgqa::gpu::follow_max_impl<Launcher>);        \
  m.impl("follow_max_backward", &kgqa::gpu::follow_max_backward_impl<Launcher>);
