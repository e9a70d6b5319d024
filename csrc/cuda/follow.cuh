// GPU kernels and host code of follow: the pull (forward, and dx in the other direction), dr and dw.
//
// The kernels are functors: operator()(thread, grid_stride) is the body of one thread, plain host
// C++ as well, so the tests run the real grids on the CPU (launch.h: HostLauncher). The host code
// (checks, allocation, launch configuration) is written once over a Launcher L: csrc/cuda/ops.cu
// instantiates it with the real CUDA launch, csrc/emulation/ops.cpp with the CPU emulation. No op
// reads device memory on the host (no synchronisation): every size a launch needs comes from
// tensor metadata or the KB's chunk table.
//
// Traffic notes (B = batch, T = facts, E = entities, s = bytes of a value, H100 HBM 3.35 TB/s):
// the pull kernels read, per fact, two indices (shared by the lanes of a warp) and one x row of
// B values, coalesced across lanes, and write each output element once: T * (8 + B*s) + E*B*s
// bytes. Rows of x are gathered at random, so 256-byte rows (B = 64, fp32) should reach about
// 60% of HBM bandwidth (~2 TB/s); B <= 8 wastes most of each 32-byte sector.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>

#include <tuple>
#include <vector>

#include "../bounds.h"
#include "../checks.h"
#include "../tnorm.h"
#include "launch.h"
#include "planned_pull.cuh"

namespace kgqa {
namespace gpu {

// follow's Finish (csrc/cuda/planned_pull.cuh): y[row, b] = the row's sum, written once.
template <typename scalar_t, typename acc_t>
struct FollowFinish {
  scalar_t* y;
  int64_t B;
  KGQA_HD void operator()(int64_t row, int64_t b, const acc_t* ys) const { y[row * B + b] = scalar_t(ys[0]); }
};

// dr, pass 1: chunk c (never crossing a relation) of the facts sorted (p, s, o) reduces into
// partial[c, b], as a[s] * (w * b[o]) in fact order (the CPU's order). Traffic: T * (8 + 2*B*s) +
// chunks*B*4.
template <typename scalar_t, typename acc_t, typename index_t>
struct RelChunkKernel {
  RelChunks rc;
  const index_t* subj;
  const index_t* obj;
  const float* weight;
  int64_t E, B;
  const scalar_t* a;  // read at subjects
  const scalar_t* bv;  // read at objects
  acc_t* partial;
  int32_t* err;
  KGQA_HD void operator()(const Thread& t, int64_t) const {
    const int64_t c = thread_row(t), b = thread_col(t);
    if (c >= rc.chunks || b >= B) return;
    acc_t acc = acc_t(0);
    int64_t begin = 0, end = 0;
    if (const int32_t bad = rc.chunk_facts(c, begin, end)) report_bad_value(err, bad);
    // As the planned pull: the ids of PULL_UNROLL facts first, then their gathers, all in flight.
    for (int64_t f = begin; f < end; f += PULL_UNROLL) {
      const int64_t n = end - f < PULL_UNROLL ? end - f : PULL_UNROLL;
      int64_t ae[PULL_UNROLL], be[PULL_UNROLL];
      acc_t wf[PULL_UNROLL];
#pragma unroll
      for (int u = 0; u < PULL_UNROLL; ++u) {
        ae[u] = be[u] = 0;
        wf[u] = acc_t(1);
        if (u < n) {
          const int64_t s = subj[f + u], o = obj[f + u];
          if (const int32_t bad = RelChunks::bad_fact_ids(s, o, E)) {
            report_bad_value(err, bad);
            partial[c * B + b] = acc;
            return;
          }
          ae[u] = s * B + b;
          be[u] = o * B + b;
          if (weight) wf[u] = acc_t(weight[f + u]);
        }
      }
#pragma unroll
      for (int u = 0; u < PULL_UNROLL; ++u) {
        if (u < n) {
          const acc_t v = acc_t(bv[be[u]]);
          acc += acc_t(a[ae[u]]) * (weight ? wf[u] * v : v);
        }
      }
    }
    partial[c * B + b] = acc;
  }
};

// dr, pass 2: dr[p, b] = sum of relation p's partials in chunk order (deterministic). Traffic:
// chunks*B*4 + R*B*s, small next to pass 1.
template <typename scalar_t, typename acc_t>
struct RelReduceKernel {
  RelChunks rc;
  const acc_t* partial;
  int64_t B;
  scalar_t* dr;
  int32_t* err;
  KGQA_HD void operator()(const Thread& t, int64_t) const {
    const int64_t p = thread_row(t), b = thread_col(t);
    if (p >= rc.rels || b >= B) return;
    acc_t sum = acc_t(0);
    if (const int32_t bad = rc.bad_relation(p)) {
      report_bad_value(err, bad);
    } else {
      for (int64_t c = rc.chunk_ptr[p]; c < rc.chunk_ptr[p + 1]; ++c) sum += partial[c * B + b];
    }
    dr[p * B + b] = scalar_t(sum);
  }
};

// The row of fact f in a grouped order (the last row whose start is <= f; rows with no facts share
// a start), found by a binary search of the row pointers; -1 when f lies in no valid segment (bad
// row pointers). The caller also checks that the segments tile the facts (PullPtrs::tiles), once.
template <typename index_t>
KGQA_HD inline int64_t row_of_fact(const PullPtrs<index_t>& ix, int64_t rows, int64_t f) {
  int64_t lo = 0, hi = rows;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (ix.ptr[mid] <= f) lo = mid; else hi = mid - 1;
  }
  if (lo >= rows || ix.bad_segment(ix.ptr[lo], ix.ptr[lo + 1]) || ix.ptr[lo] > f || ix.ptr[lo + 1] <= f) return -1;
  return lo;
}

// dw (follow_backward_w), facts in the subject order: dw[f] = sum over b of a[s, b] * r[p, b] *
// c[o, b] (a read at subjects, c at objects), one thread per fact over a grid-stride loop, the
// batch summed in the CPU's kDotLanes interleaved lanes and then the lanes in order (the same
// order of operations as csrc/cpu/follow_kernels.h: dw_into). A fact finds its subject by a binary
// search of the row pointers (no per-fact subject array is stored in this order). Traffic: T * (8 +
// 3*B*s); each thread reads three rows of B values.
template <typename scalar_t, typename acc_t, typename index_t>
struct FactDotKernel {
  PullPtrs<index_t> ix;  // grouped by subject
  int64_t rows, B;
  const scalar_t* a;
  const scalar_t* r;
  const scalar_t* c;
  scalar_t* dw;
  int32_t* err;
  static constexpr int64_t kLanes = 8;
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
      const int64_t o = ix.col[f], p = ix.rel[f];
      // Whole blocks of lanes, then the tail: every lane index is known when unrolled, so the
      // lanes stay in registers (an index j % kLanes would put them in local memory).
      acc_t lane[kLanes];
#pragma unroll
      for (int64_t k = 0; k < kLanes; ++k) lane[k] = acc_t(0);
      int64_t j = 0;
      for (; j + kLanes <= B; j += kLanes) {
#pragma unroll
        for (int64_t k = 0; k < kLanes; ++k) {
          lane[k] += acc_t(a[s * B + j + k]) * acc_t(r[p * B + j + k]) * acc_t(c[o * B + j + k]);
        }
      }
#pragma unroll
      for (int64_t k = 0; k < kLanes; ++k) {
        if (j + k < B) lane[k] += acc_t(a[s * B + j + k]) * acc_t(r[p * B + j + k]) * acc_t(c[o * B + j + k]);
      }
      acc_t sum = acc_t(0);
#pragma unroll
      for (int64_t k = 0; k < kLanes; ++k) sum += lane[k];
      dw[f] = scalar_t(sum);
    }
  }
};

template <typename L>
at::Tensor follow_impl(const at::Tensor& x_in, const at::Tensor& r_in, at::TensorList kb, bool inverse,
                       bool row_major) {
  check_kb(kb, "follow");
  typename L::Guard guard(kb_device(kb));
  const int64_t E = kb_num_entities(kb), R = kb_num_relations(kb);
  const PullOperands in = pull_operands("follow", kb, x_in, "x", E, r_in, "r", R);
  const at::Tensor &x = in.a, &r = in.b;
  const int64_t B = in.B;
  at::Tensor y = at::empty({E, B}, x.options());
  if (B == 0) return row_major ? at::empty({B, E}, x.options()).t() : y;
  const PullIndex idx = pull_index(kb, inverse);
  typename L::Errors errors("follow", kb_device(kb));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "follow", [&] {
    AT_DISPATCH_INDEX_TYPES(idx.col.scalar_type(), "follow", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const Ptrs<const scalar_t*> xs{{x.data_ptr<scalar_t>()}}, rs{{r.data_ptr<scalar_t>()}};
      launch_planned_pull<L, scalar_t, acc_t, index_t, 1>(pull_ptrs<index_t>(idx), E, xs, rs, 1, B, x.options(),
                                                          FollowFinish<scalar_t, acc_t>{y.data_ptr<scalar_t>(), B},
                                                          errors.flag());
    });
  });
  errors.done();
  // The pull writes whole rows; a row-major result is its transpose (the CPU kernel writes it directly).
  return row_major ? transpose_copy(y).t() : y;
}

template <typename L>
at::Tensor follow_backward_r_impl(const at::Tensor& x_in, const at::Tensor& g_in, at::TensorList kb, bool inverse) {
  check_kb(kb, "follow_backward_r");
  typename L::Guard guard(kb_device(kb));
  const int64_t E = kb_num_entities(kb), R = kb_num_relations(kb), chunks = kb[REL_CHUNK_REL].numel();
  const PullOperands in = pull_operands("follow_backward_r", kb, x_in, "x", E, g_in, "grad", E);
  const at::Tensor &x = in.a, &g = in.b;
  const int64_t B = in.B;
  at::Tensor dr = at::empty({R, B}, x.options());
  if (B == 0) return dr;
  const at::Tensor& a = inverse ? g : x;  // read at subjects
  const at::Tensor& bv = inverse ? x : g;  // read at objects
  const RelChunks rc = rel_chunks(kb);
  typename L::Errors errors("follow_backward_r", kb_device(kb));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "follow_backward_r", [&] {
    AT_DISPATCH_INDEX_TYPES(kb[REL_SUBJ].scalar_type(), "follow_backward_r", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      at::Tensor partial = at::empty({chunks, B}, x.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
      if (chunks > 0) {
        L::launch(rows_by_batch(chunks, B), RelChunkKernel<scalar_t, acc_t, index_t>{
            rc, kb[REL_SUBJ].data_ptr<index_t>(), kb[REL_OBJ].data_ptr<index_t>(),
            kb[REL_WEIGHT].numel() > 0 ? kb[REL_WEIGHT].data_ptr<float>() : nullptr, E, B,
            a.data_ptr<scalar_t>(), bv.data_ptr<scalar_t>(), partial.data_ptr<acc_t>(), errors.flag()});
      }
      L::launch(rows_by_batch(R, B), RelReduceKernel<scalar_t, acc_t>{rc, partial.data_ptr<acc_t>(), B,
                                                                        dr.data_ptr<scalar_t>(), errors.flag()});
    });
  });
  errors.done();
  return dr;
}

template <typename L>
at::Tensor follow_backward_w_impl(const at::Tensor& x_in, const at::Tensor& r_in, const at::Tensor& g_in,
                                  at::TensorList kb, bool inverse) {
  check_kb(kb, "follow_backward_w");
  typename L::Guard guard(kb_device(kb));
  const int64_t E = kb_num_entities(kb), R = kb_num_relations(kb);
  const PullOperands xr = pull_operands("follow_backward_w", kb, x_in, "x", E, r_in, "r", R);
  // x checked against grad too, in its batch-innermost copy (no second transpose of a row-major x).
  const PullOperands xg = pull_operands("follow_backward_w", kb, xr.a, "x", E, g_in, "grad", E);
  const int64_t B = xr.B, facts = kb[SUBJ_OBJ].numel();
  at::Tensor dw = at::empty({facts}, xr.a.options());
  if (facts == 0) return dw;
  if (B == 0) return dw.zero_();
  const at::Tensor& a = inverse ? xg.b : xr.a;  // read at subjects
  const at::Tensor& c = inverse ? xr.a : xg.b;  // read at objects
  const PullIndex idx = pull_index(kb, true);
  typename L::Errors errors("follow_backward_w", kb_device(kb));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "follow_backward_w", [&] {
    AT_DISPATCH_INDEX_TYPES(idx.col.scalar_type(), "follow_backward_w", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      L::launch(elementwise(facts), FactDotKernel<scalar_t, acc_t, index_t>{
          pull_ptrs<index_t>(idx), E, B, a.data_ptr<scalar_t>(), xr.b.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(),
          dw.data_ptr<scalar_t>(), errors.flag()});
    });
  });
  errors.done();
  return dw;
}

}  // namespace gpu
}  // namespace kgqa

#define KGQA_REGISTER_GPU_FOLLOW(m, Launcher)                                 \
  m.impl("follow", &kgqa::gpu::follow_impl<Launcher>);                       \
  m.impl("follow_backward_r", &kgqa::gpu::follow_backward_r_impl<Launcher>); \
  m.impl("follow_backward_w", &kgqa::gpu::follow_backward_w_impl<Launcher>);
