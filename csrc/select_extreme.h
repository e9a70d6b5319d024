// Schemas of select_extreme (the members of each example's entity set whose value is the largest or
// the smallest) and its backward, and the per-element arithmetic every kernel shares (ExtremeRows),
// so that the CPU kernels and the GPU functors agree on which members are best.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>

#include "portability.h"

#define KGQA_SCHEMAS_SELECT_EXTREME(m)                                                                   \
  /* x [E, B] set weights, values [E] (shared) or [E, B], s = -1 if minimum else +1; valid: x > 0 and */ \
  /* values finite; m[b] = max over valid e of s * v; y [E, B] contiguous = x * [s * v == m[b]]     */ \
  /* (temperature 0) or x * exp((s * v - m[b]) / temperature), 0 where not valid                  */   \
  m.def("select_extreme(Tensor x, Tensor values, bool minimum, float temperature) -> Tensor");            \
  /* (dx [E, B] contiguous, dvalues: values' shape, contiguous; [0] unless need_values). dvalues is */   \
  /* 0 at temperature 0; else s / T * (grad * y - [e == first best of b] * sum over e' of grad * y) */    \
  m.def("select_extreme_backward(Tensor grad, Tensor x, Tensor values, bool minimum, float temperature, " \
        "bool need_values) -> (Tensor, Tensor)");

namespace kgqa {

// One call's x and values, read through their strides (values [E] has batch stride 0), with the
// rule of which members count and how much each keeps. Sums are in acc_t (float for 16-bit).
template <typename scalar_t, typename acc_t>
struct ExtremeRows {
  const scalar_t* x;
  int64_t x_e, x_b;
  const scalar_t* v;
  int64_t v_e, v_b;
  acc_t sign, temperature;

  KGQA_HD acc_t x_at(int64_t e, int64_t b) const { return acc_t(x[e * x_e + b * x_b]); }
  // s * v[e, b], and whether e is a valid member of b: x > 0 (NaN is not) and the value finite
  // (k - k is 0 for a finite k, NaN for an infinite or NaN one).
  KGQA_HD acc_t key(int64_t e, int64_t b, bool& valid) const {
    const acc_t k = sign * acc_t(v[e * v_e + b * v_b]);
    valid = x_at(e, b) > acc_t(0) && k - k == acc_t(0);
    return k;
  }
  // Folds entities [e0, e1) of row b into (best, first): the best key and the first entity in
  // index order that has it (first < 0: none valid yet).
  KGQA_HD void scan(int64_t b, int64_t e0, int64_t e1, acc_t& best, int64_t& first) const {
    for (int64_t e = e0; e < e1; ++e) {
      bool ok;
      const acc_t k = key(e, b, ok);
      if (ok && (first < 0 || k > best)) {
        best = k;
        first = e;
      }
    }
  }
  // Folds the result of a later range of the same row into (best, first).
  KGQA_HD static void merge(acc_t other_best, int64_t other_first, acc_t& best, int64_t& first) {
    if (other_first >= 0 && (first < 0 || other_best > best)) {
      best = other_best;
      first = other_first;
    }
  }
  // The factor member e of row b keeps (y = x * factor): 0 where e is not valid.
  KGQA_HD acc_t factor(int64_t e, int64_t b, acc_t best) const {
    bool ok;
    const acc_t k = key(e, b, ok);
    if (!ok) return acc_t(0);
    if (temperature > acc_t(0)) return exp_of((k - best) / temperature);
    return k == best ? acc_t(1) : acc_t(0);
  }
  // y[e, b] = x * factor, 0 where the factor is (never NaN, even for an x of NaN or inf).
  KGQA_HD acc_t kept(int64_t e, int64_t b, acc_t best) const {
    const acc_t f = factor(e, b, best);
    return f == acc_t(0) ? acc_t(0) : x_at(e, b) * f;
  }
  KGQA_HD static acc_t exp_of(acc_t t) {
#if defined(__CUDA_ARCH__)
    return ::exp(t);
#else
    return std::exp(t);
#endif
  }
};

// The arguments of the raw ops: x [E, B] floating; values [E] or [E, B] of x's dtype and device;
// temperature finite and >= 0.
inline void check_extreme_args(const char* op, const at::Tensor& x, const at::Tensor& values, double temperature) {
  TORCH_CHECK(x.dim() == 2, op, "(): x must be [E, B] (batch innermost), got ", x.sizes());
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), op, "(): x must be floating point, got ", x.scalar_type());
  TORCH_CHECK((values.dim() == 1 && values.size(0) == x.size(0)) || (values.dim() == 2 && values.sizes() == x.sizes()),
              op, "(): values must be [E=", x.size(0), "] or [E, B] like x ", x.sizes(), ", got ", values.sizes());
  TORCH_CHECK(values.scalar_type() == x.scalar_type() && values.device() == x.device(), op,
              "(): values must have x's dtype and device (", x.scalar_type(), ", ", x.device(), "), got ",
              values.scalar_type(), ", ", values.device());
  TORCH_CHECK(std::isfinite(temperature) && temperature >= 0, op,
              "(): temperature must be finite and >= 0, got ", temperature);
}

inline void check_extreme_grad(const char* op, const at::Tensor& grad, const at::Tensor& x) {
  TORCH_CHECK(grad.sizes() == x.sizes() && grad.scalar_type() == x.scalar_type() && grad.device() == x.device(), op,
              "(): grad must have x's shape, dtype and device (", x.sizes(), ", ", x.scalar_type(), ", ", x.device(),
              "), got ", grad.sizes(), ", ", grad.scalar_type(), ", ", grad.device());
}

template <typename scalar_t, typename acc_t>
ExtremeRows<scalar_t, acc_t> extreme_rows(const at::Tensor& x, const at::Tensor& values, bool minimum,
                                          double temperature) {
  return {x.data_ptr<scalar_t>(), x.stride(0), x.stride(1), values.data_ptr<scalar_t>(), values.stride(0),
          values.dim() == 2 ? values.stride(1) : 0, minimum ? acc_t(-1) : acc_t(1), acc_t(temperature)};
}

}  // namespace kgqa
