// GPU kernels and host code of follow_push: follow from a sparse frontier, one thread per example.
//
// The kernels are functors: operator()(thread, grid_stride) is the body of one thread, plain host
// C++ as well, so the tests run the real grids on the CPU (launch.h: HostLauncher). The host code
// (checks, allocation, launch configuration) is written once over a Launcher L: csrc/cuda/ops.cu
// instantiates it with the real CUDA launch, csrc/emulation/ops.cpp with the CPU emulation. No op
// reads device memory on the host (no synchronisation): every size a launch needs comes from
// tensor metadata or the KB's chunk table.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>

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

// follow_push: one thread per example pushes its frontier along the facts leaving it, adding into
// y_acc[o, b] (a float32-or-wider buffer of zeros). Only this thread writes column b, in frontier
// and fact order, so there are no atomics and the sums are deterministic. Traffic: the frontier's
// facts only, B times less parallelism than the pull: meant for sparse frontiers.
template <typename scalar_t, typename acc_t, typename index_t>
struct FollowPushKernel {
  PullPtrs<index_t> ix;  // facts grouped by the entity they leave
  Seeds seeds;
  const scalar_t* vals;
  const scalar_t* r;
  int64_t B;
  acc_t* y;
  int32_t* err;
  KGQA_HD void operator()(const Thread& t, int64_t stride) const {
    for (int64_t b = grid_first(t); b < B; b += stride) {
      int64_t k0 = 0, k1 = 0;
      if (const int32_t bad = seeds.bad_example(b, k0, k1)) report_bad_value(err, bad);
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t s = seeds.ids[k];
        if (const int32_t bad = seeds.bad_id(s) ? seeds.bad_id(s) : ix.bad_segment(ix.ptr[s], ix.ptr[s + 1])) {
          report_bad_value(err, bad);
          break;
        }
        const acc_t v = acc_t(vals[k]);
        for (int64_t f = ix.ptr[s]; f < ix.ptr[s + 1]; ++f) {
          if (const int32_t bad = ix.bad_fact(f)) {
            report_bad_value(err, bad);
            return;
          }
          const acc_t c = acc_t(r[int64_t(ix.rel[f]) * B + b]) * (ix.weight ? acc_t(ix.weight[f]) * v : v);
          y[int64_t(ix.col[f]) * B + b] += c;
        }
      }
    }
  }
};

// follow_push backward: d vals per frontier entry, and dr[:, b] (zeros on entry) owned by the
// thread of example b. Traffic: the frontier's facts, plus zeroing R*B accumulators.
template <typename scalar_t, typename acc_t, typename index_t>
struct FollowPushBackwardKernel {
  PullPtrs<index_t> ix;
  Seeds seeds;
  const scalar_t* vals;
  const scalar_t* r;
  const scalar_t* grad;
  int64_t B;
  scalar_t* dvals;
  acc_t* dr;
  int32_t* err;
  KGQA_HD void operator()(const Thread& t, int64_t stride) const {
    for (int64_t b = grid_first(t); b < B; b += stride) {
      int64_t k0 = 0, k1 = 0;
      if (const int32_t bad = seeds.bad_example(b, k0, k1)) report_bad_value(err, bad);
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t s = seeds.ids[k];
        acc_t dv = acc_t(0);
        if (const int32_t bad = seeds.bad_id(s) ? seeds.bad_id(s) : ix.bad_segment(ix.ptr[s], ix.ptr[s + 1])) {
          report_bad_value(err, bad);
          dvals[k] = scalar_t(dv);
          continue;
        }
        const acc_t v = acc_t(vals[k]);
        for (int64_t f = ix.ptr[s]; f < ix.ptr[s + 1]; ++f) {
          if (const int32_t bad = ix.bad_fact(f)) {
            report_bad_value(err, bad);
            break;
          }
          const int64_t p = ix.rel[f];
          const acc_t g = acc_t(grad[int64_t(ix.col[f]) * B + b]);
          const acc_t wg = ix.weight ? acc_t(ix.weight[f]) * g : g;
          dv += acc_t(r[p * B + b]) * wg;
          dr[p * B + b] += v * wg;
        }
        dvals[k] = scalar_t(dv);
      }
    }
  }
};

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
      if (B > 0) {
        L::launch(elementwise(B), FollowPushKernel<scalar_t, acc_t, index_t>{
            pull_ptrs<index_t>(pull_index(kb, !inverse)),
            Seeds{ptr.data_ptr<int64_t>(), ids.data_ptr<int64_t>(), ids.numel(), E},
            vals.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(), B, acc.data_ptr<acc_t>(), errors.flag()});
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
  at::Tensor dvals = at::empty_like(vals), dr;
  typename L::Errors errors("follow_push_backward", kb_device(kb));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, vals.scalar_type(), "follow_push_backward", [&] {
    AT_DISPATCH_INDEX_TYPES(kb[SUBJ_OBJ].scalar_type(), "follow_push_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      at::Tensor dr_acc = at::zeros({R, B}, vals.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
      if (B > 0) {
        L::launch(elementwise(B), FollowPushBackwardKernel<scalar_t, acc_t, index_t>{
            pull_ptrs<index_t>(pull_index(kb, !inverse)),
            Seeds{ptr.data_ptr<int64_t>(), ids.data_ptr<int64_t>(), ids.numel(), kb_num_entities(kb)},
            vals.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), B,
            dvals.data_ptr<scalar_t>(), dr_acc.data_ptr<acc_t>(), errors.flag()});
      }
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
