// The one definition of the KB tensor list and of every constant that C++, Triton and Python share.
// Python reads the same values from the compiled module (kgqa_kernels/layout.py takes them from
// kgqa_kernels._C, which csrc/kgqa.cpp fills from the X-macros below), so nothing is kept equal by
// hand; tests/ops/test_layout.py compares that view with the constants() op.
//
// The same deduplicated facts are stored in three orders so that each pass of each op is a pull
// over contiguous segments: no atomics, no locks, and each output element is written once.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

// The slots of SparseKB.tensors(), in order (kgqa_kernels/kb.py builds the list by these names).
//  - grouped by object, sorted (o, p, s): the forward pull y[o] = sum r[p] * x[s];
//  - grouped by subject, sorted (s, p, o): the inverse pull, and dx of the forward;
//  - grouped by relation, sorted (p, s, o): the segmented reduction behind dr;
//  - the chunk table of dr: relation p owns chunks REL_CHUNK_PTR[p]..[p+1], chunk c belongs to
//    relation REL_CHUNK_REL[c]. Fixed when the KB is built, so the reduction order (and so the
//    result) never depends on the hardware, and no kernel launch needs the sizes on the host.
#define KGQA_KB_SLOTS(X)                                              \
  X(OBJ_PTR) X(OBJ_SUBJ) X(OBJ_REL) X(OBJ_WEIGHT)                     \
  X(SUBJ_PTR) X(SUBJ_OBJ) X(SUBJ_REL) X(SUBJ_WEIGHT)                  \
  X(REL_PTR) X(REL_SUBJ) X(REL_OBJ) X(REL_WEIGHT)                     \
  X(REL_CHUNK_PTR) X(REL_CHUNK_REL)

// Constants shared with Python and Triton: X(name, value), each with the reason for its value.
#define KGQA_CONSTANTS(X)                                                                          \
  /* dr is reduced over chunks of at most this many facts that never cross a relation. */          \
  X(REL_CHUNK, 4096)                                                                               \
  /* follow_intersect keeps which branches tie with the minimum in one uint8 per element. */       \
  X(MAX_TIE_BRANCHES, 8)                                                                           \
  /* The GPU kernels take the branch pointers by value, in a fixed-size array. */                  \
  X(GPU_MAX_BRANCHES, 16)

namespace kgqa {

enum KBSlot : int64_t {
#define KGQA_SLOT_ENUM(name) name,
  KGQA_KB_SLOTS(KGQA_SLOT_ENUM)
#undef KGQA_SLOT_ENUM
  NUM_KB_SLOTS
};

#define KGQA_CONSTANT_DEF(name, value) constexpr int64_t name = value;
KGQA_CONSTANTS(KGQA_CONSTANT_DEF)
#undef KGQA_CONSTANT_DEF

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

inline int64_t kb_num_entities(at::TensorList kb) { return kb[OBJ_PTR].numel() - 1; }
// Where the KB lives (check_kb makes every tensor of the list live there).
inline at::Device kb_device(at::TensorList kb) { return kb[OBJ_PTR].device(); }
inline int64_t kb_num_relations(at::TensorList kb) { return kb[REL_PTR].numel() - 1; }

// The forward pull reads subjects into objects; `inverse` pulls objects into subjects.
inline PullIndex pull_index(at::TensorList kb, bool inverse) {
  if (inverse) return {kb[SUBJ_PTR], kb[SUBJ_OBJ], kb[SUBJ_REL], kb[SUBJ_WEIGHT]};
  return {kb[OBJ_PTR], kb[OBJ_SUBJ], kb[OBJ_REL], kb[OBJ_WEIGHT]};
}

}  // namespace kgqa
