// CPU kernels of select_extreme and its backward, one example (a column of x [E, B]) per task: its
// best value and first best entity (ExtremeRows::scan, csrc/select_extreme.h), then its outputs.
// Each output element is written once, by one thread, and the sums (the backward's sum over a row
// of grad * y; the sum over the batch of a shared values' gradient) run in a fixed order, no
// atomics: bitwise deterministic, and in the order of the GPU functors (csrc/cuda/select_extreme.cuh).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "../count.h"
#include "../select_extreme.h"

namespace kgqa {
namespace cpu {
namespace {

// Examples per task: several only when E is small (a task of at least ~32k elements).
int64_t row_grain(int64_t E) { return std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(E, 1)); }

at::Tensor select_extreme_cpu(const at::Tensor& x, const at::Tensor& values, bool minimum, double temperature) {
  check_extreme_args("select_extreme", x, values, temperature);
  const int64_t E = x.size(0), B = x.size(1);
  at::Tensor y = at::empty({E, B}, x.options());
  if (y.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "select_extreme", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto rows = extreme_rows<scalar_t, acc_t>(x, values, minimum, temperature);
    scalar_t* yp = y.data_ptr<scalar_t>();
    at::parallel_for(0, B, row_grain(E), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        acc_t best = acc_t(0);
        int64_t first = -1;
        rows.scan(b, 0, E, best, first);
        for (int64_t e = 0; e < E; ++e) yp[e * B + b] = scalar_t(rows.kept(e, b, best));
      }
    });
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor> select_extreme_backward_cpu(const at::Tensor& grad, const at::Tensor& x,
                                                               const at::Tensor& values, bool minimum,
                                                               double temperature, bool need_values) {
  const char* op = "select_extreme_backward";
  check_extreme_args(op, x, values, temperature);
  check_extreme_grad(op, grad, x);
  const int64_t E = x.size(0), B = x.size(1);
  at::Tensor dx = at::empty({E, B}, x.options());
  const bool soft = temperature > 0;
  // dvalues: written in full at temperature > 0, zeros at 0 (the exact selection is flat in values).
  at::Tensor dv = !need_values ? at::empty({0}, values.options())
                               : soft ? at::empty(values.sizes(), values.options()) : at::zeros(values.sizes(), values.options());
  if (dx.numel() == 0) return {dx, need_values ? dv.zero_() : dv};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "select_extreme_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto rows = extreme_rows<scalar_t, acc_t>(x, values, minimum, temperature);
    const scalar_t* gp = grad.data_ptr<scalar_t>();
    const int64_t g_e = grad.stride(0), g_b = grad.stride(1);
    scalar_t* dxp = dx.data_ptr<scalar_t>();
    const bool with_dv = need_values && soft;
    const bool shared = values.dim() == 1;
    scalar_t* dvp = with_dv ? dv.data_ptr<scalar_t>() : nullptr;
    const acc_t scale = rows.sign / rows.temperature;  // d(s * v / T) / dv
    // Per example: its best, first best entity and S = sum over e of grad * y (chunk order).
    std::vector<acc_t> best_of(B), sum_of(B);
    std::vector<int64_t> first_of(B);
    at::parallel_for(0, B, row_grain(E), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        acc_t best = acc_t(0);
        int64_t first = -1;
        rows.scan(b, 0, E, best, first);
        acc_t total = acc_t(0);
        for (int64_t c0 = 0; c0 < E; c0 += kCountChunk) {
          acc_t part = acc_t(0);
          for (int64_t e = c0; e < std::min(E, c0 + kCountChunk); ++e) {
            const acc_t f = rows.factor(e, b, best), g = acc_t(gp[e * g_e + b * g_b]);
            dxp[e * B + b] = scalar_t(g * f);
            part += g * rows.kept(e, b, best);
          }
          total += part;
        }
        best_of[b] = best;
        first_of[b] = first;
        sum_of[b] = total;
        if (with_dv && !shared) {  // values [E, B]: each example's own gradient
          for (int64_t e = 0; e < E; ++e) {
            const acc_t gy = acc_t(gp[e * g_e + b * g_b]) * rows.kept(e, b, best);
            dvp[e * B + b] = scalar_t(scale * (gy - (e == first ? total : acc_t(0))));
          }
        }
      }
    });
    if (!with_dv || !shared) return;
    // values [E]: the examples' gradients summed in batch order, one entity per element.
    at::parallel_for(0, E, std::max<int64_t>(1, 16384 / B), [&](int64_t e0, int64_t e1) {
      for (int64_t e = e0; e < e1; ++e) {
        acc_t sum = acc_t(0);
        for (int64_t b = 0; b < B; ++b) {
          const acc_t gy = acc_t(gp[e * g_e + b * g_b]) * rows.kept(e, b, best_of[b]);
          sum += scale * (gy - (e == first_of[b] ? sum_of[b] : acc_t(0)));
        }
        dvp[e] = scalar_t(sum);
      }
    });
  });
  return {dx, dv};
}

}  // namespace

TORCH_LIBRARY_IMPL(kgqa_kernels, CPU, m) {
  m.impl("select_extreme", &select_extreme_cpu);
  m.impl("select_extreme_backward", &select_extreme_backward_cpu);
}

}  // namespace cpu
}  // namespace kgqa
