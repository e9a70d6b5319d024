// GPU kernels and host code of select_extreme and its backward (functors: see intersect.cuh), on
// the arithmetic of ExtremeRows (csrc/select_extreme.h) that the CPU kernels use too. Each
// example's best is found in two launches: one thread per (chunk of kCountChunk entities, example)
// scans its chunk, then one thread per example merges the chunks in order (the first best entity
// in index order, whatever the chunking). The backward's sum over a row of grad * y runs in the
// chunk order of csrc/count.h, and a shared values' gradient sums the batch in order: no atomics,
// deterministic, and the CPU kernels' order of operations.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <tuple>

#include "../count.h"
#include "../select_extreme.h"
#include "launch.h"

namespace kgqa {
namespace gpu {

// Per (chunk, example): the chunk's best and first best entity. Reads E*B*(2s) once.
template <typename scalar_t, typename acc_t>
struct BestChunkKernel {
  ExtremeRows<scalar_t, acc_t> rows;
  int64_t E, B, chunks;
  acc_t* best;
  int64_t* first;
  KGQA_HD void operator()(const Thread& t, int64_t) const {
    const int64_t c = thread_row(t), b = thread_col(t);
    if (c >= chunks || b >= B) return;
    acc_t bv = acc_t(0);
    int64_t fv = -1;
    rows.scan(b, c * kCountChunk, std::min(E, (c + 1) * kCountChunk), bv, fv);
    best[c * B + b] = bv;
    first[c * B + b] = fv;
  }
};

// Per example: the chunks' results merged in chunk order into row 0 of best / first.
template <typename acc_t>
struct BestMergeKernel {
  int64_t chunks, B;
  acc_t* best;
  int64_t* first;
  KGQA_HD void operator()(const Thread& t, int64_t stride) const {
    for (int64_t b = grid_first(t); b < B; b += stride) {
      acc_t bv = best[b];
      int64_t fv = first[b];
      for (int64_t c = 1; c < chunks; ++c)
        ExtremeRows<float, acc_t>::merge(best[c * B + b], first[c * B + b], bv, fv);
      best[b] = bv;
      first[b] = fv;
    }
  }
};

// y [E, B] contiguous, elementwise.
template <typename scalar_t, typename acc_t>
struct SelectKernel {
  ExtremeRows<scalar_t, acc_t> rows;
  const acc_t* best;
  int64_t B, n;
  scalar_t* y;
  KGQA_HD void operator()(const Thread& t, int64_t stride) const {
    for (int64_t i = grid_first(t); i < n; i += stride) y[i] = scalar_t(rows.kept(i / B, i % B, best[i % B]));
  }
};

// Per (chunk, example): dx = grad * factor over the chunk, and the chunk's sum of grad * y.
template <typename scalar_t, typename acc_t>
struct SelectBackwardChunkKernel {
  ExtremeRows<scalar_t, acc_t> rows;
  const scalar_t* grad;
  int64_t g_e, g_b, E, B, chunks;
  const acc_t* best;
  scalar_t* dx;
  acc_t* partial;
  KGQA_HD void operator()(const Thread& t, int64_t) const {
    const int64_t c = thread_row(t), b = thread_col(t);
    if (c >= chunks || b >= B) return;
    const acc_t m = best[b];
    acc_t part = acc_t(0);
    for (int64_t e = c * kCountChunk; e < std::min(E, (c + 1) * kCountChunk); ++e) {
      const acc_t g = acc_t(grad[e * g_e + b * g_b]);
      dx[e * B + b] = scalar_t(g * rows.factor(e, b, m));
      part += g * rows.kept(e, b, m);
    }
    partial[c * B + b] = part;
  }
};

// The values' gradient: s / T * (grad * y - [e == first best] * S[b]); for values [E, B] one
// element per thread, for values [E] one entity per thread summing the batch in order.
template <typename scalar_t, typename acc_t>
struct SelectValuesGradKernel {
  ExtremeRows<scalar_t, acc_t> rows;
  const scalar_t* grad;
  int64_t g_e, g_b, E, B;
  bool shared;
  const acc_t* best;
  const int64_t* first;
  const acc_t* row_sum;
  scalar_t* dv;
  KGQA_HD acc_t term(int64_t e, int64_t b) const {
    const acc_t gy = acc_t(grad[e * g_e + b * g_b]) * rows.kept(e, b, best[b]);
    return rows.sign / rows.temperature * (gy - (e == first[b] ? row_sum[b] : acc_t(0)));
  }
  KGQA_HD void operator()(const Thread& t, int64_t stride) const {
    const int64_t n = shared ? E : E * B;
    for (int64_t i = grid_first(t); i < n; i += stride) {
      if (!shared) {
        dv[i] = scalar_t(term(i / B, i % B));
        continue;
      }
      acc_t sum = acc_t(0);
      for (int64_t b = 0; b < B; ++b) sum += term(i, b);
      dv[i] = scalar_t(sum);
    }
  }
};

// Each example's best (row 0 of the returned buffers: best [chunks * B] of acc_t, first int64).
template <typename L, typename scalar_t, typename acc_t>
std::tuple<at::Tensor, at::Tensor> best_of_rows(const ExtremeRows<scalar_t, acc_t>& rows, const at::Tensor& x) {
  const int64_t E = x.size(0), B = x.size(1), chunks = std::max<int64_t>(count_chunks(E), 1);
  at::Tensor best = at::empty({chunks * B}, x.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
  at::Tensor first = at::empty({chunks * B}, x.options().dtype(at::kLong));
  acc_t* bp = best.data_ptr<acc_t>();
  int64_t* fp = first.data_ptr<int64_t>();
  L::launch(rows_by_batch(chunks, B), BestChunkKernel<scalar_t, acc_t>{rows, E, B, chunks, bp, fp});
  L::launch(elementwise(B), BestMergeKernel<acc_t>{chunks, B, bp, fp});
  return {best, first};
}

template <typename L>
at::Tensor select_extreme_impl(const at::Tensor& x, const at::Tensor& values, bool minimum, double temperature) {
  check_extreme_args("select_extreme", x, values, temperature);
  typename L::Guard guard(x.device());
  const int64_t E = x.size(0), B = x.size(1);
  at::Tensor y = at::empty({E, B}, x.options());
  if (y.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "select_extreme", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto rows = extreme_rows<scalar_t, acc_t>(x, values, minimum, temperature);
    const at::Tensor best = std::get<0>(best_of_rows<L>(rows, x));
    L::launch(elementwise(y.numel()),
              SelectKernel<scalar_t, acc_t>{rows, best.data_ptr<acc_t>(), B, y.numel(), y.data_ptr<scalar_t>()});
  });
  return y;
}

template <typename L>
std::tuple<at::Tensor, at::Tensor> select_extreme_backward_impl(const at::Tensor& grad, const at::Tensor& x,
                                                                const at::Tensor& values, bool minimum,
                                                                double temperature, bool need_values) {
  const char* op = "select_extreme_backward";
  check_extreme_args(op, x, values, temperature);
  check_extreme_grad(op, grad, x);
  typename L::Guard guard(x.device());
  const int64_t E = x.size(0), B = x.size(1), chunks = std::max<int64_t>(count_chunks(E), 1);
  const bool soft = temperature > 0;
  at::Tensor dx = at::empty({E, B}, x.options());
  at::Tensor dv = need_values ? at::zeros(values.sizes(), values.options()) : at::empty({0}, values.options());
  if (dx.numel() == 0) return {dx, dv};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "select_extreme_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto rows = extreme_rows<scalar_t, acc_t>(x, values, minimum, temperature);
    const std::tuple<at::Tensor, at::Tensor> found = best_of_rows<L>(rows, x);
    const acc_t* best = std::get<0>(found).data_ptr<acc_t>();
    at::Tensor partial = at::empty({chunks * B}, x.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    at::Tensor row_sum = at::empty({B}, partial.options());
    acc_t* pp = partial.data_ptr<acc_t>();
    L::launch(rows_by_batch(chunks, B),
              SelectBackwardChunkKernel<scalar_t, acc_t>{rows, grad.data_ptr<scalar_t>(), grad.stride(0),
                                                         grad.stride(1), E, B, chunks, best,
                                                         dx.data_ptr<scalar_t>(), pp});
    if (!(need_values && soft)) return;
    L::launch(elementwise(B), ChunkSumKernel<acc_t, acc_t>{pp, chunks, B, row_sum.data_ptr<acc_t>()});
    const bool shared = values.dim() == 1;
    L::launch(elementwise(shared ? E : E * B),
              SelectValuesGradKernel<scalar_t, acc_t>{rows, grad.data_ptr<scalar_t>(), grad.stride(0), grad.stride(1),
                                                      E, B, shared, best, std::get<1>(found).data_ptr<int64_t>(),
                                                      row_sum.data_ptr<acc_t>(), dv.data_ptr<scalar_t>()});
  });
  return {dx, dv};
}

}  // namespace gpu
}  // namespace kgqa

#define KGQA_REGISTER_GPU_SELECT_EXTREME(m, Launcher)                                                          \
  m.impl("select_extreme", [](const at::Tensor& x, const at::Tensor& v, bool minimum, double temperature) {    \
    return kgqa::gpu::select_extreme_impl<Launcher>(x, v, minimum, temperature);                              \
  });                                                                                                          \
  m.impl("select_extreme_backward", [](const at::Tensor& g, const at::Tensor& x, const at::Tensor& v,          \
                                       bool minimum, double temperature, bool need_values) {                   \
    return kgqa::gpu::select_extreme_backward_impl<Launcher>(g, x, v, minimum, temperature, need_values);      \
  });
