// GPU kernels and host code of count and its backward (functors: see intersect.cuh). A column of
// x [E, B] is summed in two launches, in the order of csrc/count.h: one thread per (chunk of
// kCountChunk entities, example) sums its chunk in entity order, then one thread per example adds
// the chunks' sums in chunk order. No atomics: deterministic, and equal to the CPU kernel bit for bit.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>

#include "../count.h"
#include "launch.h"

namespace kgqa {
namespace gpu {

// Partial sums [chunks, B] of a strided [E, B] matrix (count's x; select_extreme's grad * y uses
// its own). Traffic E*B*s read once; one thread per (chunk, example), the batch across a warp.
template <typename scalar_t, typename acc_t>
struct CountChunkKernel {
  const scalar_t* x;
  int64_t se, sb, E, B, chunks;
  acc_t* partial;
  KGQA_HD void operator()(const Thread& t, int64_t) const {
    const int64_t c = thread_row(t), b = thread_col(t);
    if (c >= chunks || b >= B) return;
    const int64_t e1 = std::min(E, (c + 1) * kCountChunk);
    acc_t part = acc_t(0);
    for (int64_t e = c * kCountChunk; e < e1; ++e) part += acc_t(x[e * se + b * sb]);
    partial[c * B + b] = part;
  }
};

// y[b] = the sum of partial[:, b] in chunk order.
template <typename scalar_t, typename acc_t>
struct ChunkSumKernel {
  const acc_t* partial;
  int64_t chunks, B;
  scalar_t* y;
  KGQA_HD void operator()(const Thread& t, int64_t stride) const {
    for (int64_t b = grid_first(t); b < B; b += stride) {
      acc_t total = acc_t(0);
      for (int64_t c = 0; c < chunks; ++c) total += partial[c * B + b];
      y[b] = scalar_t(total);
    }
  }
};

// dx[e, b] = grad[b], contiguous [E, B]: streaming writes.
template <typename scalar_t>
struct CountBackwardKernel {
  const scalar_t* grad;
  int64_t gs, B, n;
  scalar_t* dx;
  KGQA_HD void operator()(const Thread& t, int64_t stride) const {
    for (int64_t i = grid_first(t); i < n; i += stride) dx[i] = grad[(i % B) * gs];
  }
};

template <typename L>
at::Tensor count_impl(const at::Tensor& x) {
  check_set("count", x);
  typename L::Guard guard(x.device());
  const int64_t E = x.size(0), B = x.size(1), chunks = count_chunks(E);
  at::Tensor y = at::empty({B}, x.options());
  if (B == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "count", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    at::Tensor partial = at::empty({std::max<int64_t>(chunks, 1) * B},
                                   x.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    acc_t* pp = partial.data_ptr<acc_t>();
    if (chunks > 0)
      L::launch(rows_by_batch(chunks, B),
                CountChunkKernel<scalar_t, acc_t>{x.data_ptr<scalar_t>(), x.stride(0), x.stride(1), E, B, chunks, pp});
    L::launch(elementwise(B), ChunkSumKernel<scalar_t, acc_t>{pp, chunks, B, y.data_ptr<scalar_t>()});
  });
  return y;
}

template <typename L>
at::Tensor count_backward_impl(const at::Tensor& grad, const at::Tensor& x) {
  check_count_grad("count_backward", grad, x);
  typename L::Guard guard(x.device());
  const int64_t E = x.size(0), B = x.size(1);
  at::Tensor dx = at::empty({E, B}, x.options());
  if (dx.numel() == 0) return dx;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "count_backward", [&] {
    L::launch(elementwise(dx.numel()), CountBackwardKernel<scalar_t>{grad.data_ptr<scalar_t>(), grad.stride(0), B,
                                                                      dx.numel(), dx.data_ptr<scalar_t>()});
  });
  return dx;
}

}  // namespace gpu
}  // namespace kgqa

#define KGQA_REGISTER_GPU_COUNT(m, Launcher)                                                      \
  m.impl("count", [](const at::Tensor& x) { return kgqa::gpu::count_impl<Launcher>(x); });        \
  m.impl("count_backward", [](const at::Tensor& g, const at::Tensor& x) {                         \
    return kgqa::gpu::count_backward_impl<Launcher>(g, x);                                        \
  });
