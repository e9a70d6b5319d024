// How the elementwise t-norm ops lay out their tensors, shared by the CPU and the GPU host code.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/copy.h>
#include <ATen/ops/empty_like.h>

#include <vector>

namespace kgqa {

// Inputs that share strides and are dense are combined over their raw storage, and outputs keep
// their layout (e.g. the batch-innermost [B, E] views that follow returns); other inputs are made
// contiguous first. Extras (the backward's grad and out) are copied into the inputs' layout when
// they differ, e.g. the expanded gradient of a sum.
inline std::vector<at::Tensor> common_layout(const char* op, at::TensorList xs, at::TensorList extras = {}) {
  TORCH_CHECK(xs.size() >= 2, op, "(): needs at least 2 tensors, got ", xs.size());
  std::vector<at::Tensor> all(xs.begin(), xs.end());
  all.insert(all.end(), extras.begin(), extras.end());
  bool same = xs[0].is_non_overlapping_and_dense();
  for (size_t i = 0; i < all.size(); ++i) {
    const auto& t = all[i];
    TORCH_CHECK(t.device() == all[0].device(), op, "(): every tensor must be on ", all[0].device(), ", got ",
                t.device());
    TORCH_CHECK(t.sizes() == all[0].sizes(), op, "(): every tensor must have shape ", all[0].sizes(),
                ", got ", t.sizes());
    TORCH_CHECK(t.scalar_type() == all[0].scalar_type(), op, "(): every tensor must have dtype ",
                all[0].scalar_type(), ", got ", t.scalar_type());
    TORCH_CHECK(at::isFloatingType(t.scalar_type()), op, "(): tensors must be floating point");
    if (i < xs.size()) same = same && t.strides() == all[0].strides();
  }
  for (size_t i = 0; i < all.size(); ++i) {
    if (!same) {
      all[i] = all[i].contiguous();
    } else if (i >= xs.size() && all[i].strides() != all[0].strides()) {
      all[i] = at::empty_like(all[0]).copy_(all[i]);
    }
  }
  return all;
}

// The backward of a combine op: its inputs, output and gradient in one layout.
struct CombineBackwardArgs {
  std::vector<at::Tensor> xs;
  at::Tensor out, grad;
};

inline CombineBackwardArgs combine_backward_layout(const char* op, at::TensorList xs, const at::Tensor& out,
                                                   const at::Tensor& grad) {
  std::vector<at::Tensor> all = common_layout(op, xs, {out, grad});
  CombineBackwardArgs a;
  a.grad = all.back();
  all.pop_back();
  a.out = all.back();
  all.pop_back();
  a.xs = std::move(all);
  return a;
}

}  // namespace kgqa
