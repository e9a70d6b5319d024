// The host side of the CUDA ops (checks, allocation, launch configuration), written once over a
// Launcher: ops.cu instantiates it with the real CUDA launch, csrc/emulation/cuda_host.cpp with the
// CPU emulation of the same grids. No op reads device memory on the host (no synchronisation):
// every size a launch needs comes from tensor metadata or the KB's chunk table.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>

#include <tuple>
#include <vector>

#include "../common_layout.h"
#include "../kb_layout.h"
#include "../tnorm.h"
#include "kernels.h"

namespace kgqa {
namespace gpu {

template <typename T, typename Src>
Ptrs<T> ptrs_of(const std::vector<at::Tensor>& ts, Src get) {
  TORCH_CHECK(int64_t(ts.size()) <= kMaxBranches, "at most ", kMaxBranches, " tensors per GPU op, got ", ts.size());
  Ptrs<T> p{};
  for (size_t i = 0; i < ts.size(); ++i) p.p[i] = get(ts[i]);
  return p;
}

template <typename L>
at::Tensor follow_impl(const at::Tensor& x_in, const at::Tensor& r_in, at::TensorList kb, bool inverse) {
  check_kb(kb, "follow");
  typename L::Guard guard(kb[0].device());
  const int64_t E = kb_num_entities(kb), R = kb_num_relations(kb);
  const PullOperands in = pull_operands("follow", kb, x_in, "x", E, r_in, "r", R);
  const at::Tensor &x = in.a, &r = in.b;
  const int64_t B = in.B;
  at::Tensor y = at::empty({E, B}, x.options());
  if (B == 0) return y;
  const PullIndex idx = pull_index(kb, inverse);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "follow", [&] {
    AT_DISPATCH_INDEX_TYPES(idx.col.scalar_type(), "follow", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      L::launch(rows_by_batch(E, B), FollowPullKernel<scalar_t, acc_t, index_t>{
          pull_ptrs<index_t>(idx), E, B, x.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(), y.data_ptr<scalar_t>()});
    });
  });
  return y;
}

template <typename L>
at::Tensor follow_backward_r_impl(const at::Tensor& x_in, const at::Tensor& g_in, at::TensorList kb, bool inverse) {
  check_kb(kb, "follow_backward_r");
  typename L::Guard guard(kb[0].device());
  const int64_t E = kb_num_entities(kb), R = kb_num_relations(kb), chunks = kb[REL_CHUNK_REL].numel();
  const PullOperands in = pull_operands("follow_backward_r", kb, x_in, "x", E, g_in, "grad", E);
  const at::Tensor &x = in.a, &g = in.b;
  const int64_t B = in.B;
  at::Tensor dr = at::empty({R, B}, x.options());
  if (B == 0) return dr;
  const at::Tensor& a = inverse ? g : x;  // read at subjects
  const at::Tensor& bv = inverse ? x : g;  // read at objects
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "follow_backward_r", [&] {
    AT_DISPATCH_INDEX_TYPES(kb[REL_SUBJ].scalar_type(), "follow_backward_r", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      at::Tensor partial = at::empty({chunks, B}, x.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
      const int64_t* chunk_ptr = kb[REL_CHUNK_PTR].data_ptr<int64_t>();
      if (chunks > 0) {
        L::launch(rows_by_batch(chunks, B), RelChunkKernel<scalar_t, acc_t, index_t>{
            kb[REL_PTR].data_ptr<int64_t>(), chunk_ptr, kb[REL_CHUNK_REL].data_ptr<int64_t>(),
            kb[REL_SUBJ].data_ptr<index_t>(), kb[REL_OBJ].data_ptr<index_t>(),
            kb[REL_WEIGHT].numel() > 0 ? kb[REL_WEIGHT].data_ptr<float>() : nullptr, chunks, B, kRelChunk,
            a.data_ptr<scalar_t>(), bv.data_ptr<scalar_t>(), partial.data_ptr<acc_t>()});
      }
      L::launch(rows_by_batch(R, B), RelReduceKernel<scalar_t, acc_t>{chunk_ptr, partial.data_ptr<acc_t>(), R, B,
                                                                        dr.data_ptr<scalar_t>()});
    });
  });
  return dr;
}

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

template <typename L>
std::tuple<at::Tensor, at::Tensor> follow_intersect_impl(at::TensorList xs_in, at::TensorList rs_in, at::TensorList kb,
                                                         bool inverse, c10::string_view tnorm_name, bool save_ties) {
  const TNorm tnorm = parse_tnorm("follow_intersect", tnorm_name, false);
  const Branches br = check_branches("follow_intersect", xs_in, rs_in, kb, kMaxBranches);
  TORCH_CHECK(!save_ties || (tnorm == TNorm::Min && int64_t(br.xs.size()) <= kMaxTieBranches),
              "follow_intersect(): save_ties needs tnorm 'min' and at most ", kMaxTieBranches, " branches");
  typename L::Guard guard(kb[0].device());
  const int64_t E = kb_num_entities(kb), B = br.B, k = br.xs.size();
  at::Tensor out = at::empty({E, B}, br.xs[0].options());
  at::Tensor ties = at::empty({save_ties ? E : 0, save_ties ? B : 0}, br.xs[0].options().dtype(at::kByte));
  if (B == 0) return {out, ties};
  const PullIndex idx = pull_index(kb, inverse);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "follow_intersect", [&] {
    AT_DISPATCH_INDEX_TYPES(idx.col.scalar_type(), "follow_intersect", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      auto data = [](const at::Tensor& t) { return static_cast<const scalar_t*>(t.data_ptr<scalar_t>()); };
      L::launch(rows_by_batch(E, B), FollowIntersectKernel<scalar_t, acc_t, index_t>{
          pull_ptrs<index_t>(idx), ptrs_of<const scalar_t*>(br.xs, data), ptrs_of<const scalar_t*>(br.rs, data), k, E, B,
          tnorm, out.data_ptr<scalar_t>(), save_ties ? ties.data_ptr<uint8_t>() : nullptr});
    });
  });
  return {out, ties};
}

template <typename L>
std::vector<at::Tensor> follow_intersect_backward_impl(const at::Tensor& grad_in, at::TensorList xs_in,
                                                       at::TensorList rs_in, at::TensorList kb, bool inverse,
                                                       c10::string_view tnorm_name) {
  const TNorm tnorm = parse_tnorm("follow_intersect_backward", tnorm_name, false);
  const Branches br = check_branches("follow_intersect_backward", xs_in, rs_in, kb, kMaxBranches);
  typename L::Guard guard(kb[0].device());
  const int64_t E = kb_num_entities(kb), B = br.B, k = br.xs.size();
  const at::Tensor grad = check_branch_grad("follow_intersect_backward", grad_in, br, kb);
  std::vector<at::Tensor> gys;
  for (int64_t i = 0; i < k; ++i) gys.push_back(at::empty({E, B}, grad.options()));
  if (B == 0) return gys;
  const PullIndex idx = pull_index(kb, inverse);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "follow_intersect_backward", [&] {
    AT_DISPATCH_INDEX_TYPES(idx.col.scalar_type(), "follow_intersect_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      auto data = [](const at::Tensor& t) { return static_cast<const scalar_t*>(t.data_ptr<scalar_t>()); };
      L::launch(rows_by_batch(E, B), FollowIntersectBackwardKernel<scalar_t, acc_t, index_t>{
          pull_ptrs<index_t>(idx), ptrs_of<const scalar_t*>(br.xs, data), ptrs_of<const scalar_t*>(br.rs, data),
          ptrs_of<scalar_t*>(gys, [](const at::Tensor& t) { return t.data_ptr<scalar_t>(); }),
          grad.data_ptr<scalar_t>(), k, E, B, tnorm});
    });
  });
  return gys;
}

// Each branch's follow-output gradient from the tie mask, stored: the GPU backward then runs the
// plain follow kernels on them. (The CPU fuses this into the gathers; on the GPU the k [E, B]
// buffers cost memory but the pulls stay the tuned FollowPullKernel.)
// Each branch's follow-output gradient from the tie mask, stored; then fn(branches, i, g_i) per
// branch runs the plain follow kernels on it. (The CPU fuses this into the gathers; on the GPU the
// k [E, B] buffers cost memory but the pulls stay the tuned FollowPullKernel.)
template <typename L, typename Fn>
std::vector<at::Tensor> from_tie_shares(const char* op, const at::Tensor& grad_in, const at::Tensor& ties,
                                        at::TensorList xs_in, at::TensorList rs_in, at::TensorList kb, Fn fn) {
  const TieBackwardArgs args = check_tie_backward(op, grad_in, ties, xs_in, rs_in, kb, kMaxBranches);
  typename L::Guard guard(kb[0].device());
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
                              return follow_impl<L>(gy, br.rs[i], kb, !inverse);
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

inline void check_frontier(const char* op, const at::Tensor& ptr, const at::Tensor& ids, const at::Tensor& vals,
                           const at::Tensor& r, at::TensorList kb) {
  check_kb(kb, op);
  const auto dev = kb[0].device();
  TORCH_CHECK(ptr.device() == dev && ptr.scalar_type() == at::kLong && ptr.dim() == 1 && ptr.numel() >= 1, op,
              "(): ptr must be an int64 vector of B + 1 offsets on ", dev);
  TORCH_CHECK(ids.device() == dev && ids.scalar_type() == at::kLong && ids.dim() == 1, op,
              "(): ids must be an int64 vector on ", dev);
  TORCH_CHECK(vals.device() == dev && vals.dim() == 1 && vals.numel() == ids.numel(), op,
              "(): vals must hold one weight per id");
  check_matrix(op, "r", r, kb_num_relations(kb), dev);
  TORCH_CHECK(r.size(1) == ptr.numel() - 1 && r.scalar_type() == vals.scalar_type(), op,
              "(): r must be [R, B] of the dtype of vals");
  // ids are not range-checked here: that would read device memory. follow() builds them from x.
}

template <typename L>
at::Tensor follow_push_impl(const at::Tensor& ptr_in, const at::Tensor& ids_in, const at::Tensor& vals_in,
                            const at::Tensor& r_in, at::TensorList kb, bool inverse) {
  check_frontier("follow_push", ptr_in, ids_in, vals_in, r_in, kb);
  typename L::Guard guard(kb[0].device());
  const at::Tensor ptr = ptr_in.contiguous(), ids = ids_in.contiguous(), vals = vals_in.contiguous(),
                   r = r_in.contiguous();
  const int64_t E = kb_num_entities(kb), B = ptr.numel() - 1;
  at::Tensor y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, vals.scalar_type(), "follow_push", [&] {
    AT_DISPATCH_INDEX_TYPES(kb[SUBJ_OBJ].scalar_type(), "follow_push", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      at::Tensor acc = at::zeros({E, B}, vals.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
      if (B > 0) {
        L::launch(elementwise(B), FollowPushKernel<scalar_t, acc_t, index_t>{
            pull_ptrs<index_t>(pull_index(kb, !inverse)), ptr.data_ptr<int64_t>(), ids.data_ptr<int64_t>(),
            vals.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(), B, acc.data_ptr<acc_t>()});
      }
      y = acc.scalar_type() == vals.scalar_type() ? acc : acc.to(vals.scalar_type());
    });
  });
  return y;
}

template <typename L>
std::tuple<at::Tensor, at::Tensor> follow_push_backward_impl(const at::Tensor& grad_in, const at::Tensor& ptr_in,
                                                             const at::Tensor& ids_in, const at::Tensor& vals_in,
                                                             const at::Tensor& r_in, at::TensorList kb, bool inverse) {
  check_frontier("follow_push_backward", ptr_in, ids_in, vals_in, r_in, kb);
  typename L::Guard guard(kb[0].device());
  const int64_t E = kb_num_entities(kb), R = kb_num_relations(kb), B = ptr_in.numel() - 1;
  check_matrix("follow_push_backward", "grad", grad_in, E, kb[0].device());
  TORCH_CHECK(grad_in.size(1) == B && grad_in.scalar_type() == vals_in.scalar_type(),
              "follow_push_backward(): grad must be [", E, ", ", B, "] of the dtype of vals");
  const at::Tensor grad = grad_in.contiguous(), ptr = ptr_in.contiguous(), ids = ids_in.contiguous(),
                   vals = vals_in.contiguous(), r = r_in.contiguous();
  at::Tensor dvals = at::empty_like(vals), dr;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, vals.scalar_type(), "follow_push_backward", [&] {
    AT_DISPATCH_INDEX_TYPES(kb[SUBJ_OBJ].scalar_type(), "follow_push_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      at::Tensor dr_acc = at::zeros({R, B}, vals.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
      if (B > 0) {
        L::launch(elementwise(B), FollowPushBackwardKernel<scalar_t, acc_t, index_t>{
            pull_ptrs<index_t>(pull_index(kb, !inverse)), ptr.data_ptr<int64_t>(), ids.data_ptr<int64_t>(),
            vals.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), B,
            dvals.data_ptr<scalar_t>(), dr_acc.data_ptr<acc_t>()});
      }
      dr = dr_acc.scalar_type() == vals.scalar_type() ? dr_acc : dr_acc.to(vals.scalar_type());
    });
  });
  return {dvals, dr};
}

}  // namespace gpu
}  // namespace kgqa

// Registers every op of csrc/schemas.h that has a GPU kernel, run by Launcher, in library m.
#define KGQA_REGISTER_GPU_OPS(m, Launcher)                                                                    \
  m.impl("follow", &kgqa::gpu::follow_impl<Launcher>);                                                       \
  m.impl("follow_backward_r", &kgqa::gpu::follow_backward_r_impl<Launcher>);                                 \
  m.impl("follow_push", &kgqa::gpu::follow_push_impl<Launcher>);                                             \
  m.impl("follow_push_backward", &kgqa::gpu::follow_push_backward_impl<Launcher>);                           \
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
  });                                                                                                         \
  m.impl("follow_intersect", &kgqa::gpu::follow_intersect_impl<Launcher>);                                   \
  m.impl("follow_intersect_backward", &kgqa::gpu::follow_intersect_backward_impl<Launcher>);                 \
  m.impl("follow_intersect_backward_x", &kgqa::gpu::follow_intersect_backward_x_impl<Launcher>);             \
  m.impl("follow_intersect_backward_r", &kgqa::gpu::follow_intersect_backward_r_impl<Launcher>);
