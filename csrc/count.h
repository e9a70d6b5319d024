// Schemas of count (the soft size of each example's entity set) and its backward, and what its CPU
// kernel and GPU host code share: the argument checks and the fixed summation order.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>

#define KGQA_SCHEMAS_COUNT(m)                                                                        \
  /* y[b] = sum over e of x[e, b], in the order of count_chunks; x [E, B] (any strides) */           \
  m.def("count(Tensor x) -> Tensor");                                                               \
  /* dx[e, b] = grad[b]: grad [B], x [E, B] (read for its shape only); dx contiguous [E, B] */       \
  m.def("count_backward(Tensor grad, Tensor x) -> Tensor");

namespace kgqa {

// A row's sum is the sum, in chunk order, of the sums of its chunks of kCountChunk entities, each
// added in entity order: every backend of the C++ library (the CPU loop and the GPU kernels, which
// give a thread to each chunk) adds in exactly this order, so they agree bit for bit and neither
// depends on the number of threads.
constexpr int64_t kCountChunk = 1024;

inline int64_t count_chunks(int64_t E) { return (E + kCountChunk - 1) / kCountChunk; }

// x of count / count_backward: [E, B], floating point.
inline void check_set(const char* op, const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 2, op, "(): x must be [E, B] (batch innermost), got ", x.sizes());
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), op, "(): x must be floating point, got ", x.scalar_type());
}

inline void check_count_grad(const char* op, const at::Tensor& grad, const at::Tensor& x) {
  check_set(op, x);
  TORCH_CHECK(grad.device() == x.device(), op, "(): grad must be on ", x.device(), ", got ", grad.device());
  TORCH_CHECK(grad.dim() == 1 && grad.size(0) == x.size(1), op, "(): grad must be [B=", x.size(1), "], got ",
              grad.sizes());
  TORCH_CHECK(grad.scalar_type() == x.scalar_type(), op, "(): grad must have x's dtype ", x.scalar_type(), ", got ",
              grad.scalar_type());
}

}  // namespace kgqa
