// GPU kernels and host code of intersect and union: elementwise over k same-shape tensors.
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

// intersect / union forward, elementwise over n. Traffic (k+1)*n*s, streaming: should reach
// ~90% of HBM bandwidth (~3 TB/s on an H100).
template <typename scalar_t, typename acc_t>
struct CombineKernel {
  Ptrs<const scalar_t*> xs;
  int64_t k, n;
  TNorm tnorm;
  scalar_t* out;
  KGQA_HD void operator()(const Thread& t, int64_t stride) const {
    for (int64_t e = grid_first(t); e < n; e += stride) {
      const bool co = tnorm == TNorm::ProbSum;
      acc_t v = co ? acc_t(1) - acc_t(xs.p[0][e]) : acc_t(xs.p[0][e]);
      for (int64_t i = 1; i < k; ++i) {
        const acc_t xi = acc_t(xs.p[i][e]);
        switch (tnorm) {
          case TNorm::Min: v = nan_min(v, xi); break;
          case TNorm::Max: v = nan_max(v, xi); break;
          case TNorm::Product: v *= xi; break;
          case TNorm::ProbSum: v *= acc_t(1) - xi; break;
        }
      }
      out[e] = scalar_t(co ? acc_t(1) - v : v);
    }
  }
};

// intersect / union backward: min/max split the gradient evenly among ties (grad / count * mask,
// amin's formula); products take the product of the other inputs, without division. Traffic
// (2k+2)*n*s, streaming (~90% of HBM bandwidth).
template <typename scalar_t, typename acc_t>
struct CombineBackwardKernel {
  Ptrs<const scalar_t*> xs;
  Ptrs<scalar_t*> dxs;
  const scalar_t* grad;
  const scalar_t* out;
  int64_t k, n;
  TNorm tnorm;
  KGQA_HD void operator()(const Thread& t, int64_t stride) const {
    for (int64_t e = grid_first(t); e < n; e += stride) {
      const acc_t g = acc_t(grad[e]);
      if (tnorm == TNorm::Min || tnorm == TNorm::Max) {
        acc_t ties = acc_t(0);
        for (int64_t i = 0; i < k; ++i) ties += acc_t(xs.p[i][e] == out[e]);
        const acc_t share = g / ties;
        for (int64_t i = 0; i < k; ++i) dxs.p[i][e] = scalar_t(share * acc_t(xs.p[i][e] == out[e]));
      } else {
        const bool co = tnorm == TNorm::ProbSum;
        for (int64_t i = 0; i < k; ++i) {
          acc_t prod = g;
          for (int64_t m = 0; m < k; ++m) {
            if (m != i) prod *= co ? acc_t(1) - acc_t(xs.p[m][e]) : acc_t(xs.p[m][e]);
          }
          dxs.p[i][e] = scalar_t(prod);
        }
      }
    }
  }
};

template <typename L>
at::Tensor combine_impl(const char* op, at::TensorList xs_in, c10::string_view tnorm_name, bool is_union) {
  const TNorm tnorm = parse_tnorm(op, tnorm_name, is_union);
  const auto xs = common_layout(op, xs_in);
  typename L::Guard guard(xs[0].device());
  at::Tensor out = at::empty_like(xs[0]);
  const int64_t n = out.numel();
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "combine", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    L::launch(elementwise(n), CombineKernel<scalar_t, acc_t>{
        ptrs_of<const scalar_t*>(xs, [](const at::Tensor& t) { return t.data_ptr<scalar_t>(); }),
        int64_t(xs.size()), n, tnorm, out.data_ptr<scalar_t>()});
  });
  return out;
}

template <typename L>
std::vector<at::Tensor> combine_backward_impl(const char* op, const at::Tensor& grad, at::TensorList xs_in,
                                              const at::Tensor& out_in, c10::string_view tnorm_name, bool is_union) {
  const TNorm tnorm = parse_tnorm(op, tnorm_name, is_union);
  const CombineBackwardArgs a = combine_backward_layout(op, xs_in, out_in, grad);
  const at::Tensor &g = a.grad, &out = a.out;
  const std::vector<at::Tensor>& all = a.xs;
  typename L::Guard guard(out.device());
  std::vector<at::Tensor> dxs;
  for (const auto& x : all) dxs.push_back(at::empty_like(x));
  const int64_t n = out.numel();
  if (n == 0) return dxs;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "combine_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    L::launch(elementwise(n), CombineBackwardKernel<scalar_t, acc_t>{
        ptrs_of<const scalar_t*>(all, [](const at::Tensor& t) { return t.data_ptr<scalar_t>(); }),
        ptrs_of<scalar_t*>(dxs, [](const at::Tensor& t) { return t.data_ptr<scalar_t>(); }),
        g.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), int64_t(all.size()), n, tnorm});
  });
  return dxs;
}

}  // namespace gpu
}  // namespace kgqa

#define KGQA_REGISTER_GPU_INTERSECT(m, Launcher)                                                              \
  m.impl("intersect", [](at::TensorList xs, c10::string_view t) {                                             \
    return kgqa::gpu::combine_impl<Launcher>("intersect", xs, t, false);                                     \
  });                                                                                                         \
  m.impl("union", [](at::TensorList xs, c10::string_view t) {                                                 \
    return kgqa::gpu::combine_impl<Launcher>("union", xs, t, true);                                          \
  });                                                                                                         \
  m.impl("intersect_backward", [](const at::Tensor& g, at::TensorList xs, const at::Tensor& o, c10::string_view t) { \
    return kgqa::gpu::combine_backward_impl<Launcher>("intersect_backward", g, xs, o, t, false);             \
  });                                                                                                         \
  m.impl("union_backward", [](const at::Tensor& g, at::TensorList xs, const at::Tensor& o, c10::string_view t) { \
    return kgqa::gpu::combine_backward_impl<Launcher>("union_backward", g, xs, o, t, true);                  \
  });
