// The argument checks of the raw ops, written once for the CPU kernels and the GPU host code (the
// public Python API checks its own arguments first, in kgqa_kernels/checks.py, with messages in
// the [B, E] layout users pass; these guard torch.ops.kgqa_kernels.* called directly). No check
// reads device memory, so the GPU host code stays free of synchronisations.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/copy.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "transpose.h"
#include "kb_layout.h"

namespace kgqa {

inline void check_kb(at::TensorList kb, const char* op) {
  TORCH_CHECK(kb.size() == NUM_KB_SLOTS, op, "(): kb must be the ", int64_t(NUM_KB_SLOTS),
              " tensors of SparseKB.tensors(), got ", kb.size());
  for (int64_t s : {OBJ_PTR, SUBJ_PTR, REL_PTR, REL_CHUNK_PTR, REL_CHUNK_REL}) {
    TORCH_CHECK(kb[s].scalar_type() == at::kLong && kb[s].dim() == 1 && kb[s].is_contiguous(),
                op, "(): kb[", s, "] must be a contiguous int64 row pointer");
  }
  const auto idx = kb[OBJ_SUBJ].scalar_type();
  TORCH_CHECK(idx == at::kInt || idx == at::kLong, op, "(): kb index tensors must be int32 or int64");
  const int64_t facts = kb[OBJ_SUBJ].numel();
  for (int64_t s : {OBJ_SUBJ, OBJ_REL, SUBJ_OBJ, SUBJ_REL, REL_SUBJ, REL_OBJ}) {
    TORCH_CHECK(kb[s].scalar_type() == idx && kb[s].numel() == facts && kb[s].is_contiguous(),
                op, "(): kb[", s, "] must be a contiguous index tensor like kb[", int64_t(OBJ_SUBJ), "]");
  }
  for (int64_t s : {OBJ_WEIGHT, SUBJ_WEIGHT, REL_WEIGHT}) {
    TORCH_CHECK(kb[s].scalar_type() == at::kFloat && kb[s].is_contiguous() &&
                    (kb[s].numel() == 0 || kb[s].numel() == facts),
                op, "(): kb[", s, "] must be an empty or per-fact float32 weight tensor");
  }
  TORCH_CHECK(kb[OBJ_PTR].numel() == kb[SUBJ_PTR].numel() && kb[OBJ_PTR].numel() >= 2, op,
              "(): kb row pointers disagree on the number of entities");
  TORCH_CHECK(kb[REL_CHUNK_PTR].numel() == kb[REL_PTR].numel(), op,
              "(): kb chunk pointers disagree on the number of relations");
  for (const auto& t : kb) {
    TORCH_CHECK(t.device() == kb_device(kb), op, "(): kb tensors must be on one device");
  }
}

// An entity or relation matrix of an op: [rows, B], floating, batch innermost, on the KB's device.
inline void check_matrix(const char* op, const char* name, const at::Tensor& t, int64_t rows,
                         const at::Device& device) {
  TORCH_CHECK(t.device() == device, op, "(): ", name, " must be on ", device, ", got ", t.device());
  TORCH_CHECK(t.dim() == 2 && t.size(0) == rows, op, "(): ", name, " must be [", rows,
              ", B] (batch innermost), got ", t.sizes());
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), op, "(): ", name, " must be floating point, got ",
              t.scalar_type());
}

// The two [rows, B] operands of a pull-shaped op (x and r, or x and grad): checked against each
// other and made contiguous (csrc/transpose.h: a row-major input's transpose on all threads).
struct PullOperands {
  at::Tensor a, b;
  int64_t B;
};

inline PullOperands pull_operands(const char* op, at::TensorList kb, const at::Tensor& a, const char* a_name,
                                  int64_t a_rows, const at::Tensor& b, const char* b_name, int64_t b_rows) {
  check_matrix(op, a_name, a, a_rows, kb_device(kb));
  check_matrix(op, b_name, b, b_rows, kb_device(kb));
  TORCH_CHECK(a.size(1) == b.size(1) && a.scalar_type() == b.scalar_type(), op, "(): ", a_name, " and ", b_name,
              " must have the same batch size and one dtype, got ", a.sizes(), " ", a.scalar_type(), " and ",
              b.sizes(), " ", b.scalar_type());
  return {batch_innermost(a), batch_innermost(b), a.size(1)};
}

// The branches of follow_intersect: k >= 2 pairs of x [E, B] and r [R, B] on the KB's device, of
// one floating dtype and batch, made contiguous. A backend may cap k (the GPU passes pointers by
// value: GPU_MAX_BRANCHES).
struct Branches {
  std::vector<at::Tensor> xs, rs;
  int64_t B;
};

inline Branches check_branches(const char* op, at::TensorList xs, at::TensorList rs, at::TensorList kb,
                               int64_t max_branches = std::numeric_limits<int64_t>::max()) {
  check_kb(kb, op);
  TORCH_CHECK(xs.size() >= 2, op, "(): needs at least 2 branches, got ", xs.size());
  TORCH_CHECK(int64_t(xs.size()) <= max_branches, op, "(): at most ", max_branches, " branches here, got ",
              xs.size());
  TORCH_CHECK(xs.size() == rs.size(), op, "(): xs and rs must have one tensor per branch, got ", xs.size(),
              " and ", rs.size());
  const int64_t E = kb_num_entities(kb), R = kb_num_relations(kb);
  Branches br;
  br.B = xs[0].dim() == 2 ? xs[0].size(1) : -1;
  for (size_t i = 0; i < xs.size(); ++i) {
    for (const auto* t : {&xs[i], &rs[i]}) {
      const int64_t rows = t == &xs[i] ? E : R;
      TORCH_CHECK(t->device() == kb_device(kb) && t->dim() == 2 && t->size(0) == rows && t->size(1) == br.B &&
                      t->scalar_type() == xs[0].scalar_type() && at::isFloatingType(t->scalar_type()),
                  op, "(): branch ", i, " must have x [", E, ", B] and r [", R, ", B] tensors on ",
                  kb_device(kb), " of one floating dtype, batch innermost");
    }
    br.xs.push_back(batch_innermost(xs[i]));
    br.rs.push_back(rs[i].contiguous());
  }
  return br;
}

// The gradient of follow_intersect's output, [E, B] of the branches' dtype, made contiguous.
inline at::Tensor check_branch_grad(const char* op, const at::Tensor& grad, const Branches& br, at::TensorList kb) {
  const int64_t E = kb_num_entities(kb);
  TORCH_CHECK(grad.device() == kb_device(kb) && grad.dim() == 2 && grad.size(0) == E && grad.size(1) == br.B &&
                  grad.scalar_type() == br.xs[0].scalar_type(),
              op, "(): grad must be [", E, ", ", br.B, "] of the inputs' dtype on ", kb_device(kb));
  return batch_innermost(grad);
}

// The arguments of a backward from follow_intersect's tie mask (bit i: branch i equals the
// minimum; [E, B] uint8 like grad): the branches, and grad made contiguous.
struct TieBackwardArgs {
  Branches br;
  at::Tensor grad;
};

inline TieBackwardArgs check_tie_backward(const char* op, const at::Tensor& grad_in, const at::Tensor& ties,
                                          at::TensorList xs, at::TensorList rs, at::TensorList kb,
                                          int64_t max_branches = std::numeric_limits<int64_t>::max()) {
  Branches br = check_branches(op, xs, rs, kb, max_branches);
  at::Tensor grad = check_branch_grad(op, grad_in, br, kb);
  TORCH_CHECK(ties.scalar_type() == at::kByte && ties.is_contiguous() && ties.sizes() == grad.sizes() &&
                  ties.device() == grad.device(),
              op, "(): ties must be a contiguous uint8 tensor shaped like grad, on its device");
  TORCH_CHECK(int64_t(br.xs.size()) <= MAX_TIE_BRANCHES, op, "(): a tie mask holds at most ", MAX_TIE_BRANCHES,
              " branches, got ", br.xs.size());
  return {std::move(br), std::move(grad)};
}

// A sparse frontier of follow_push: example b's entries are ids[ptr[b]:ptr[b+1]] with weights vals,
// r is [R, B]; all on the KB's device, made contiguous. On the CPU the offsets are checked in full
// before any id is read, and every id is range-checked; on the GPU that would read device memory
// (a synchronisation per call), so there the public follow() builds them from x.
struct Frontier {
  at::Tensor ptr, ids, vals, r;
  int64_t B;
};

inline Frontier check_frontier(const char* op, const at::Tensor& ptr_in, const at::Tensor& ids_in,
                               const at::Tensor& vals_in, const at::Tensor& r_in, at::TensorList kb) {
  check_kb(kb, op);
  const auto dev = kb_device(kb);
  const int64_t E = kb_num_entities(kb), R = kb_num_relations(kb);
  TORCH_CHECK(ptr_in.device() == dev && ptr_in.scalar_type() == at::kLong && ptr_in.dim() == 1 && ptr_in.numel() >= 1,
              op, "(): ptr must be an int64 vector of B + 1 offsets on ", dev);
  TORCH_CHECK(ids_in.device() == dev && ids_in.scalar_type() == at::kLong && ids_in.dim() == 1, op,
              "(): ids must be an int64 vector on ", dev);
  TORCH_CHECK(vals_in.device() == dev && vals_in.dim() == 1 && vals_in.numel() == ids_in.numel() &&
                  at::isFloatingType(vals_in.scalar_type()),
              op, "(): vals must be a floating vector with one weight per id, on ", dev);
  const int64_t B = ptr_in.numel() - 1;
  check_matrix(op, "r", r_in, R, dev);
  TORCH_CHECK(r_in.size(1) == B && r_in.scalar_type() == vals_in.scalar_type(), op, "(): r must be [", R, ", ", B,
              "] (batch innermost) of the dtype of vals");
  Frontier fr{ptr_in.contiguous(), ids_in.contiguous(), vals_in.contiguous(), r_in.contiguous(), B};
  if (dev.is_cpu()) {
    const int64_t* p = fr.ptr.data_ptr<int64_t>();
    const int64_t* id = fr.ids.data_ptr<int64_t>();
    TORCH_CHECK(p[0] == 0 && p[B] == fr.ids.numel(), op, "(): ptr must run from 0 to the number of ids");
    for (int64_t b = 0; b < B; ++b) TORCH_CHECK(p[b] <= p[b + 1], op, "(): ptr must be non-decreasing");
    for (int64_t k = 0; k < fr.ids.numel(); ++k) {
      TORCH_CHECK(id[k] >= 0 && id[k] < E, op, "(): ids[", k, "] = ", id[k], " is not an entity id in [0, ", E, ")");
    }
  }
  return fr;
}

// The output gradient of follow_push: [E, B] of the dtype of vals, made contiguous.
inline at::Tensor check_frontier_grad(const char* op, const at::Tensor& grad, const Frontier& fr, at::TensorList kb) {
  const int64_t E = kb_num_entities(kb);
  check_matrix(op, "grad", grad, E, kb_device(kb));
  TORCH_CHECK(grad.size(1) == fr.B && grad.scalar_type() == fr.vals.scalar_type(), op, "(): grad must be [", E,
              ", ", fr.B, "] of the dtype of vals");
  return batch_innermost(grad);
}

// The elementwise t-norm ops: inputs that share strides and are dense are combined over their raw
// storage, and outputs keep their layout (e.g. the batch-innermost [B, E] views that follow
// returns); other inputs are made contiguous first. Extras (the backward's grad and out) are copied
// into the inputs' layout when they differ, e.g. the expanded gradient of a sum.
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
