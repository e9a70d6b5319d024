// The tensor list a SparseKB hands to every op (kgqa_kernels/kb.py builds it; keep both in sync).
// The same deduplicated facts are stored in three orders so that each pass of each op is a pull
// over contiguous segments: no atomics, no locks, and each output element is written once.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "tnorm.h"

namespace kgqa {

enum KBSlot : int64_t {
  // Grouped by object, sorted (o, p, s): the forward pull y[o] = sum r[p] * x[s].
  OBJ_PTR = 0, OBJ_SUBJ, OBJ_REL, OBJ_WEIGHT,
  // Grouped by subject, sorted (s, p, o): the inverse pull, and dx of the forward.
  SUBJ_PTR, SUBJ_OBJ, SUBJ_REL, SUBJ_WEIGHT,
  // Grouped by relation, sorted (p, s, o): the segmented reduction behind dr.
  REL_PTR, REL_SUBJ, REL_OBJ, REL_WEIGHT,
  // dr is reduced over chunks of at most kRelChunk facts that never cross a relation; relation p
  // owns chunks REL_CHUNK_PTR[p]..[p+1] and chunk c belongs to relation REL_CHUNK_REL[c]. Fixed when
  // the KB is built, so the reduction order (and so the result) never depends on the hardware, and
  // no kernel launch needs the sizes on the host.
  REL_CHUNK_PTR, REL_CHUNK_REL,
  NUM_KB_SLOTS
};

constexpr int64_t kRelChunk = 4096;  // kgqa_kernels/kb.py: REL_CHUNK

// One pull direction: segment `row` holds facts ptr[row]..ptr[row+1], each reading entity
// col[f] through relation rel[f] with weight[f] (weight.numel() == 0 means all ones).
struct PullIndex {
  at::Tensor ptr, col, rel, weight;
};

// The raw pointers of a PullIndex that kernels read.
template <typename index_t>
struct PullPtrs {
  const int64_t* ptr;
  const index_t* col;
  const index_t* rel;
  const float* weight;  // nullptr when unweighted
};

template <typename index_t>
inline PullPtrs<index_t> pull_ptrs(const PullIndex& idx) {
  return {idx.ptr.data_ptr<int64_t>(), idx.col.data_ptr<index_t>(), idx.rel.data_ptr<index_t>(),
          idx.weight.numel() > 0 ? idx.weight.data_ptr<float>() : nullptr};
}

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
                op, "(): kb[", s, "] must be a contiguous index tensor like kb[1]");
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
    TORCH_CHECK(t.device() == kb[0].device(), op, "(): kb tensors must be on one device");
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
// other and made contiguous.
struct PullOperands {
  at::Tensor a, b;
  int64_t B;
};

inline PullOperands pull_operands(const char* op, at::TensorList kb, const at::Tensor& a, const char* a_name,
                                  int64_t a_rows, const at::Tensor& b, const char* b_name, int64_t b_rows) {
  check_matrix(op, a_name, a, a_rows, kb[0].device());
  check_matrix(op, b_name, b, b_rows, kb[0].device());
  TORCH_CHECK(a.size(1) == b.size(1) && a.scalar_type() == b.scalar_type(), op, "(): ", a_name, " and ", b_name,
              " must have the same batch size and one dtype, got ", a.sizes(), " ", a.scalar_type(), " and ",
              b.sizes(), " ", b.scalar_type());
  return {a.contiguous(), b.contiguous(), a.size(1)};
}

inline int64_t kb_num_entities(at::TensorList kb) { return kb[OBJ_PTR].numel() - 1; }
inline int64_t kb_num_relations(at::TensorList kb) { return kb[REL_PTR].numel() - 1; }

// The branches of follow_intersect: k >= 2 pairs of x [E, B] and r [R, B] on the KB's device, of
// one floating dtype and batch, made contiguous. A backend may cap k (the GPU passes pointers by
// value).
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
      TORCH_CHECK(t->device() == kb[0].device() && t->dim() == 2 && t->size(0) == rows && t->size(1) == br.B &&
                      t->scalar_type() == xs[0].scalar_type() && at::isFloatingType(t->scalar_type()),
                  op, "(): branch ", i, " must have x [", E, ", B] and r [", R, ", B] tensors on ",
                  kb[0].device(), " of one floating dtype, batch innermost");
    }
    br.xs.push_back(xs[i].contiguous());
    br.rs.push_back(rs[i].contiguous());
  }
  return br;
}

// The gradient of follow_intersect's output, [E, B] of the branches' dtype, made contiguous.
inline at::Tensor check_branch_grad(const char* op, const at::Tensor& grad, const Branches& br, at::TensorList kb) {
  const int64_t E = kb_num_entities(kb);
  TORCH_CHECK(grad.device() == kb[0].device() && grad.dim() == 2 && grad.size(0) == E && grad.size(1) == br.B &&
                  grad.scalar_type() == br.xs[0].scalar_type(),
              op, "(): grad must be [", E, ", ", br.B, "] of the inputs' dtype on ", kb[0].device());
  return grad.contiguous();
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
  TORCH_CHECK(int64_t(br.xs.size()) <= kMaxTieBranches, op, "(): a tie mask holds at most ", kMaxTieBranches,
              " branches, got ", br.xs.size());
  return {std::move(br), std::move(grad)};
}

// The forward pull reads subjects into objects; `inverse` pulls objects into subjects.
inline PullIndex pull_index(at::TensorList kb, bool inverse) {
  if (inverse) return {kb[SUBJ_PTR], kb[SUBJ_OBJ], kb[SUBJ_REL], kb[SUBJ_WEIGHT]};
  return {kb[OBJ_PTR], kb[OBJ_SUBJ], kb[OBJ_REL], kb[OBJ_WEIGHT]};
}

}  // namespace kgqa
