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

#include "portability.h"

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
  /* The GPU pull kernels' work plan (csrc/work_plan.h): each worker (a warp's batch lanes, or a   */ \
  /* Triton program) takes this many items of the merge path over rows and facts, so no worker   */ \
  /* reads more than this many facts whatever the KB's skew.                                       */ \
  X(PLAN_ITEMS, 256)                                                                               \
  /* Facts whose ids a CUDA pull worker loads and checks before it gathers their rows: the      */ \
  /* gathers of that many facts are in flight at once (the GPU work model reads it).            */ \
  X(PULL_UNROLL, 4)                                                                                \
  /* follow_intersect keeps which branches tie with the minimum in one uint8 per element. */       \
  X(MAX_TIE_BRANCHES, 8)                                                                           \
  /* The GPU kernels take the branch pointers by value, in a fixed-size array. */                  \
  X(GPU_MAX_BRANCHES, 16)                                                                          \
  /* Codes a kernel leaves in its error flag (csrc/bounds.h): slot s of the KB list reports s + 1, */ \
  /* these the two tensors of follow_push's frontier. */                                           \
  X(BAD_FRONTIER_PTR, 101)                                                                         \
  X(BAD_FRONTIER_IDS, 102)

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

// The slot names, for messages.
inline const char* slot_name(int64_t slot) {
  static const char* const names[] = {
#define KGQA_SLOT_NAME(name) #name,
      KGQA_KB_SLOTS(KGQA_SLOT_NAME)
#undef KGQA_SLOT_NAME
  };
  return slot >= 0 && slot < NUM_KB_SLOTS ? names[slot] : "?";
}

// v in [0, n): one unsigned compare, which also catches negative values.
KGQA_HD inline bool in_range(int64_t v, int64_t n) { return uint64_t(v) < uint64_t(n); }

// One pull direction: segment `row` holds facts ptr[row]..ptr[row+1], each reading entity
// col[f] (< cols) through relation rel[f] (< rels) with weight[f] (weight.numel() == 0 means all
// ones); ptr_slot is the KB slot of ptr, col and rel follow it.
struct PullIndex {
  at::Tensor ptr, col, rel, weight;
  int64_t cols, rels, ptr_slot;
};

// The raw pointers of a PullIndex that kernels read, with the bounds every kernel checks each value
// it reads against (the KB's contents are never trusted: csrc/bounds.h).
template <typename index_t>
struct PullPtrs {
  const int64_t* ptr;
  const index_t* col;
  const index_t* rel;
  const float* weight;  // nullptr when unweighted
  int64_t facts, cols, rels, ptr_slot;

  // 0 when facts [begin, end) exist, else the error code of the row pointer.
  KGQA_HD int32_t bad_segment(int64_t begin, int64_t end) const {
    return (begin >= 0 && begin <= end && end <= facts) ? 0 : int32_t(ptr_slot + 1);
  }
  // Whether the `rows` segments cover the facts from the first to the last (each fact is then in
  // some segment, so a pass that writes one value per fact writes every one).
  KGQA_HD bool tiles(int64_t rows) const { return ptr[0] == 0 && ptr[rows] == facts; }
  // 0 when fact f reads an entity and a relation that exist, else the code of the bad slot.
  KGQA_HD int32_t bad_fact(int64_t f) const {
    if (!in_range(int64_t(col[f]), cols)) return int32_t(ptr_slot + 2);
    if (!in_range(int64_t(rel[f]), rels)) return int32_t(ptr_slot + 3);
    return 0;
  }
};

template <typename index_t>
inline PullPtrs<index_t> pull_ptrs(const PullIndex& idx) {
  return {idx.ptr.data_ptr<int64_t>(), idx.col.data_ptr<index_t>(), idx.rel.data_ptr<index_t>(),
          idx.weight.numel() > 0 ? idx.weight.data_ptr<float>() : nullptr,
          idx.col.numel(), idx.cols, idx.rels, idx.ptr_slot};
}

inline int64_t kb_num_entities(at::TensorList kb) { return kb[OBJ_PTR].numel() - 1; }
// Where the KB lives (check_kb makes every tensor of the list live there).
inline at::Device kb_device(at::TensorList kb) { return kb[OBJ_PTR].device(); }
inline int64_t kb_num_relations(at::TensorList kb) { return kb[REL_PTR].numel() - 1; }

// The forward pull reads subjects into objects; `inverse` pulls objects into subjects.
// dr's chunk table (REL_PTR, REL_CHUNK_PTR, REL_CHUNK_REL), with the checks that keep a kernel
// in bounds and make a corrupted table an error rather than a wrong sum: a chunk must lie in the
// range of the relation it names, relations' chunk ranges must not overlap, and each relation must
// have exactly the chunks its facts need.
struct RelChunks {
  const int64_t* rel_ptr;
  const int64_t* chunk_ptr;
  const int64_t* chunk_rel;
  int64_t facts, rels, chunks;

  // Facts [begin, end) of chunk c (0 <= c < chunks), or the error code of the bad slot.
  KGQA_HD int32_t chunk_facts(int64_t c, int64_t& begin, int64_t& end) const {
    const int64_t p = chunk_rel[c];
    if (!in_range(p, rels)) return int32_t(REL_CHUNK_REL + 1);
    const int64_t c0 = chunk_ptr[p], c1 = chunk_ptr[p + 1];
    if (c < c0 || c >= c1) return int32_t(REL_CHUNK_REL + 1);
    const int64_t f0 = rel_ptr[p], f1 = rel_ptr[p + 1];
    if (f0 < 0 || f0 > f1 || f1 > facts) return int32_t(REL_PTR + 1);
    if ((c - c0) >= (f1 - f0 + REL_CHUNK - 1) / REL_CHUNK) return int32_t(REL_CHUNK_PTR + 1);
    begin = f0 + (c - c0) * REL_CHUNK;
    end = begin + REL_CHUNK < f1 ? begin + REL_CHUNK : f1;
    return 0;
  }
  // 0 when a fact of the (p, s, o) order reads subject s and object o that exist among E entities,
  // else the code of the bad slot (the subject's first).
  KGQA_HD static int32_t bad_fact_ids(int64_t s, int64_t o, int64_t E) {
    if (!in_range(s, E)) return int32_t(REL_SUBJ + 1);
    return in_range(o, E) ? 0 : int32_t(REL_OBJ + 1);
  }
  // 0 when relation p (0 <= p < rels) owns chunks [chunk_ptr[p], chunk_ptr[p + 1]), a range inside
  // the table that starts where relation p - 1's ends, as many as its facts need; else the code.
  KGQA_HD int32_t bad_relation(int64_t p) const {
    const int64_t c0 = chunk_ptr[p], c1 = chunk_ptr[p + 1];
    if (c0 < 0 || c0 > c1 || c1 > chunks || (p == 0 && c0 != 0)) return int32_t(REL_CHUNK_PTR + 1);
    const int64_t f0 = rel_ptr[p], f1 = rel_ptr[p + 1];
    if (f0 < 0 || f0 > f1 || f1 > facts) return int32_t(REL_PTR + 1);
    if (c1 - c0 != (f1 - f0 + REL_CHUNK - 1) / REL_CHUNK) return int32_t(REL_CHUNK_PTR + 1);
    return 0;
  }
};

inline RelChunks rel_chunks(at::TensorList kb) {
  return {kb[REL_PTR].data_ptr<int64_t>(), kb[REL_CHUNK_PTR].data_ptr<int64_t>(),
          kb[REL_CHUNK_REL].data_ptr<int64_t>(), kb[REL_SUBJ].numel(), kb[REL_PTR].numel() - 1,
          kb[REL_CHUNK_REL].numel()};
}

// Each order's slots are adjacent: ptr, col, rel, weight (PullPtrs::bad_fact names them so).
static_assert(OBJ_SUBJ == OBJ_PTR + 1 && OBJ_REL == OBJ_PTR + 2, "OBJ_* slots must be adjacent");
static_assert(SUBJ_OBJ == SUBJ_PTR + 1 && SUBJ_REL == SUBJ_PTR + 2, "SUBJ_* slots must be adjacent");
inline PullIndex pull_index(at::TensorList kb, bool inverse) {
  const int64_t E = kb_num_entities(kb), R = kb_num_relations(kb);
  if (inverse) return {kb[SUBJ_PTR], kb[SUBJ_OBJ], kb[SUBJ_REL], kb[SUBJ_WEIGHT], E, R, SUBJ_PTR};
  return {kb[OBJ_PTR], kb[OBJ_SUBJ], kb[OBJ_REL], kb[OBJ_WEIGHT], E, R, OBJ_PTR};
}

}  // namespace kgqa
