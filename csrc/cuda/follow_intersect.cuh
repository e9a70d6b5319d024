// GPU kernels and host code of follow_intersect and its backwards.
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

#include "../bounds.h"
#include "../checks.h"
#include "../tnorm.h"
#include "launch.h"
#include "follow.cuh"

namespace kgqa {
namespace gpu {

// follow_intersect forward's Finish (csrc/cuda/planned_pull.cuh): the row's k sums combined,
// written once; with ties, also the uint8 mask of the branches equal to the minimum (compared in
// the output dtype). Traffic k*T*(8 + B*s) + E*B*(s+1): one pass over the facts for all k branches.
template <typename scalar_t, typename acc_t>
struct IntersectFinish {
  int64_t k, B;
  TNorm tnorm;
  scalar_t* out;
  uint8_t* ties;  // nullptr: not wanted
  KGQA_HD void operator()(int64_t row, int64_t b, const acc_t* ys) const {
    acc_t v = ys[0];
    for (int64_t i = 1; i < k; ++i) v = tnorm == TNorm::Min ? nan_min(v, ys[i]) : v * ys[i];
    const scalar_t o = scalar_t(v);
    out[row * B + b] = o;
    if (ties) {
      uint8_t m = 0;
      for (int64_t i = 0; i < k; ++i) m |= uint8_t(acc_t(scalar_t(ys[i])) == acc_t(o)) << i;
      ties[row * B + b] = m;
    }
  }
};

// follow_intersect backward without a tie mask: from the row's k sums (recomputed, rounded to the
// input dtype as the forward's outputs were), the gradient of each branch's pull output.
// Traffic k*T*(8 + B*s) + (k+1)*E*B*s.
template <typename scalar_t, typename acc_t>
struct IntersectBackwardFinish {
  Ptrs<scalar_t*> gys;
  const scalar_t* grad;
  int64_t k, B;
  TNorm tnorm;
  KGQA_HD void operator()(int64_t row, int64_t b, const acc_t* sums) const {
    acc_t ys[GPU_MAX_BRANCHES] = {};  // k >= 2 entries are set below
    for (int64_t i = 0; i < k; ++i) ys[i] = acc_t(scalar_t(sums[i]));
    const int64_t e = row * B + b;
    const acc_t g = acc_t(grad[e]);
    if (tnorm == TNorm::Min) {
      acc_t v = ys[0];
      for (int64_t i = 1; i < k; ++i) v = nan_min(v, ys[i]);
      acc_t tied = acc_t(0);
      for (int64_t i = 0; i < k; ++i) tied += acc_t(ys[i] == v);
      const acc_t share = g / tied;
      for (int64_t i = 0; i < k; ++i) gys.p[i][e] = scalar_t(share * acc_t(ys[i] == v));
    } else {
      for (int64_t i = 0; i < k; ++i) {
        acc_t prod = g;
        for (int64_t m = 0; m < k; ++m) {
          if (m != i) prod *= ys[m];
        }
        gys.p[i][e] = scalar_t(prod);
      }
    }
  }
};

// follow_intersect backward from the tie mask, elementwise. Traffic n*(s + 1 + k*s), streaming.
template <typename scalar_t, typename acc_t>
struct TiesBackwardKernel {
  const scalar_t* grad;
  const uint8_t* ties;
  Ptrs<scalar_t*> gys;
  int64_t k, n;
  KGQA_HD void operator()(const Thread& t, int64_t stride) const {
    for (int64_t e = grid_first(t); e < n; e += stride) {
      int count = 0;
      for (int64_t i = 0; i < k; ++i) count += (ties[e] >> i) & 1;
      const acc_t share = acc_t(grad[e]) / acc_t(count);
      for (int64_t i = 0; i < k; ++i) gys.p[i][e] = scalar_t(share * acc_t((ties[e] >> i) & 1));
    }
  }
};

template <typename L>
std::tuple<at::Tensor, at::Tensor> follow_intersect_impl(at::TensorList xs_in, at::TensorList rs_in, at::TensorList kb,
                                                         bool inverse, c10::string_view tnorm_name, bool save_ties) {
  const TNorm tnorm = parse_tnorm("follow_intersect", tnorm_name, false);
  const Branches br = check_branches("follow_intersect", xs_in, rs_in, kb, GPU_MAX_BRANCHES);
  TORCH_CHECK(!save_ties || (tnorm == TNorm::Min && int64_t(br.xs.size()) <= MAX_TIE_BRANCHES),
              "follow_intersect(): save_ties needs tnorm 'min' and at most ", MAX_TIE_BRANCHES, " branches");
  typename L::Guard guard(kb_device(kb));
  const int64_t E = kb_num_entities(kb), B = br.B, k = br.xs.size();
  at::Tensor out = at::empty({E, B}, br.xs[0].options());
  at::Tensor ties = at::empty({save_ties ? E : 0, save_ties ? B : 0}, br.xs[0].options().dtype(at::kByte));
  if (B == 0) return {out, ties};
  const PullIndex idx = pull_index(kb, inverse);
  typename L::Errors errors("follow_intersect", kb_device(kb));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "follow_intersect", [&] {
    AT_DISPATCH_INDEX_TYPES(idx.col.scalar_type(), "follow_intersect", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      auto data = [](const at::Tensor& t) { return static_cast<const scalar_t*>(t.data_ptr<scalar_t>()); };
      launch_planned_pull<L, scalar_t, acc_t, index_t, GPU_MAX_BRANCHES>(
          pull_ptrs<index_t>(idx), E, ptrs_of<const scalar_t*>(br.xs, data), ptrs_of<const scalar_t*>(br.rs, data), k,
          B, out.options(),
          IntersectFinish<scalar_t, acc_t>{k, B, tnorm, out.data_ptr<scalar_t>(),
                                           save_ties ? ties.data_ptr<uint8_t>() : nullptr},
          errors.flag());
    });
  });
  errors.done();
  return {out, ties};
}

template <typename L>
std::vector<at::Tensor> follow_intersect_backward_impl(const at::Tensor& grad_in, at::TensorList xs_in,
                                                       at::TensorList rs_in, at::TensorList kb, bool inverse,
                                                       c10::string_view tnorm_name) {
  const TNorm tnorm = parse_tnorm("follow_intersect_backward", tnorm_name, false);
  const Branches br = check_branches("follow_intersect_backward", xs_in, rs_in, kb, GPU_MAX_BRANCHES);
  typename L::Guard guard(kb_device(kb));
  const int64_t E = kb_num_entities(kb), B = br.B, k = br.xs.size();
  const at::Tensor grad = check_branch_grad("follow_intersect_backward", grad_in, br, kb);
  std::vector<at::Tensor> gys;
  for (int64_t i = 0; i < k; ++i) gys.push_back(at::empty({E, B}, grad.options()));
  if (B == 0) return gys;
  const PullIndex idx = pull_index(kb, inverse);
  typename L::Errors errors("follow_intersect_backward", kb_device(kb));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "follow_intersect_backward", [&] {
    AT_DISPATCH_INDEX_TYPES(idx.col.scalar_type(), "follow_intersect_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      auto data = [](const at::Tensor& t) { return static_cast<const scalar_t*>(t.data_ptr<scalar_t>()); };
      launch_planned_pull<L, scalar_t, acc_t, index_t, GPU_MAX_BRANCHES>(
          pull_ptrs<index_t>(idx), E, ptrs_of<const scalar_t*>(br.xs, data), ptrs_of<const scalar_t*>(br.rs, data), k,
          B, grad.options(),
          IntersectBackwardFinish<scalar_t, acc_t>{
              ptrs_of<scalar_t*>(gys, [](const at::Tensor& t) { return t.data_ptr<scalar_t>(); }),
              grad.data_ptr<scalar_t>(), k, B, tnorm},
          errors.flag());
    });
  });
  errors.done();
  return gys;
}

// Each branch's follow-output gradient from the tie mask, stored; then fn(branches, i, g_i) per
// branch runs the plain follow kernels on it. (The CPU fuses this into the gathers; on the GPU the
// k [E, B] buffers cost memory but the pulls stay follow's planned pull.)
template <typename L, typename Fn>
std::vector<at::Tensor> from_tie_shares(const char* op, const at::Tensor& grad_in, const at::Tensor& ties,
                                        at::TensorList xs_in, at::TensorList rs_in, at::TensorList kb, Fn fn) {
  const TieBackwardArgs args = check_tie_backward(op, grad_in, ties, xs_in, rs_in, kb, GPU_MAX_BRANCHES);
  typename L::Guard guard(kb_device(kb));
  const at::Tensor& grad = args.grad;
  const int64_t k = args.br.xs.size(), n = grad.numel();
  std::vector<at::Tensor> gys;
  for (int64_t i = 0; i < k; ++i) gys.push_back(at::empty_like(grad));
  if (n > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "tie_shares", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      L::launch(elementwise(n), TiesBackwardKernel<scalar_t, acc_t>{
          grad.data_ptr<scalar_t>(), ties.data_ptr<uint8_t>(),
          ptrs_of<scalar_t*>(gys, [](const at::Tensor& t) { return t.data_ptr<scalar_t>(); }), k, n});
    });
  }
  std::vector<at::Tensor> out;
  for (int64_t i = 0; i < k; ++i) out.push_back(fn(args.br, i, gys[i]));
  return out;
}

template <typename L>
std::vector<at::Tensor> follow_intersect_backward_x_impl(const at::Tensor& grad, const at::Tensor& ties,
                                                         at::TensorList xs, at::TensorList rs, at::TensorList kb,
                                                         bool inverse) {
  return from_tie_shares<L>("follow_intersect_backward_x", grad, ties, xs, rs, kb,
                            [&](const Branches& br, int64_t i, const at::Tensor& gy) {
                              return follow_impl<L>(gy, br.rs[i], kb, !inverse, false);
                            });
}

template <typename L>
std::vector<at::Tensor> follow_intersect_backward_r_impl(const at::Tensor& grad, const at::Tensor& ties,
                                                         at::TensorList xs, at::TensorList rs, at::TensorList kb,
                                                         bool inverse) {
  return from_tie_shares<L>("follow_intersect_backward_r", grad, ties, xs, rs, kb,
                            [&](const Branches& br, int64_t i, const at::Tensor& gy) {
                              return follow_backward_r_impl<L>(br.xs[i], gy, kb, inverse);
                            });
}

}  // namespace gpu
}  // namespace kgqa

#define KGQA_REGISTER_GPU_FOLLOW_INTERSECT(m, Launcher)                                                       \
  m.impl("follow_intersect", &kgqa::gpu::follow_intersect_impl<Launcher>);                                   \
  m.impl("follow_intersect_backward", &kgqa::gpu::follow_intersect_backward_impl<Launcher>);                 \
  m.impl("follow_intersect_backward_x", &kgqa::gpu::follow_intersect_backward_x_impl<Launcher>);             \
  m.impl("follow_intersect_backward_r", &kgqa::gpu::follow_intersect_backward_r_impl<Launcher>);
