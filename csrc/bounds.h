// Kernels never trust the contents of the tensors they index with: a KB list can be built by hand,
// corrupted, or edited after SparseKB validated it. Every kernel checks each row pointer, id and
// chunk entry it reads before using it (it reads them anyway, so a compare per value is all it
// costs: counted, no CPU pass executes more than 1.5% more instructions than without the checks;
// docs/results.md, "Bounds checks cost"), skips what is out of range, and leaves a code in an
// error flag: slot s of the KB list reports s + 1, the frontier of follow_push BAD_FRONTIER_*. The
// host turns the code into an error after the kernel: the CPU at once; the GPU without a
// synchronisation per call (csrc/cuda/launch_cuda.cuh).
#pragma once

#include <c10/util/Exception.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "kb_layout.h"
#include "portability.h"

namespace kgqa {

// Keeps the first code reported (a kernel skips what it reported, so later codes add nothing).
KGQA_HD inline void report_bad_value(int32_t* flag, int32_t code) {
#if defined(__CUDA_ARCH__)
  atomicCAS(flag, 0, code);
#else
  if (*flag == 0) *flag = code;  // the host emulation runs one thread at a time
#endif
}

inline std::string bad_value_what(int32_t code) {
  if (code == BAD_FRONTIER_PTR) return "ptr holds an offset outside the ids, or offsets that decrease";
  if (code == BAD_FRONTIER_IDS) return "ids holds an id that is not an entity";
  const int64_t slot = code - 1;
  std::string what = std::string("kb[") + slot_name(slot) + "] holds ";
  switch (slot) {
    case OBJ_PTR: case SUBJ_PTR: case REL_PTR:
      return what + "a row pointer outside the facts, or row pointers that decrease";
    case REL_CHUNK_PTR: case REL_CHUNK_REL:
      return what + "a chunk entry that does not match REL_PTR";
    case OBJ_SUBJ: case SUBJ_OBJ: case REL_SUBJ: case REL_OBJ:
      return what + "an id that is not an entity";
    default:
      return what + "an id that is not a relation";
  }
}

// What a code means and what to do about it (the Triton ops print the same: kgqa_kernels._C).
inline std::string bad_value_message(int32_t code) {
  return bad_value_what(code) +
         ": the tensor list was changed or corrupted after SparseKB built it (nothing was read out of bounds; "
         "rebuild the KB, or pass SparseKB.tensors())";
}

// The error for a code left by a kernel (never returns).
[[noreturn]] inline void raise_bad_value(const char* op, int32_t code, const char* when = "") {
  TORCH_CHECK(false, op, "(): ", when, bad_value_message(code));
}

// The CPU kernels' flag, shared by their threads.
struct BoundsFlag {
  std::atomic<int32_t> code{0};
  void report(int32_t c) {
    int32_t expected = 0;
    code.compare_exchange_strong(expected, c, std::memory_order_relaxed);
  }
  // After the parallel loop: raise if a thread reported.
  void check(const char* op) const {
    const int32_t c = code.load(std::memory_order_relaxed);
    if (c != 0) raise_bad_value(op, c);
  }
};

}  // namespace kgqa
