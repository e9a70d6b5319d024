// Large CPU buffers on transparent huge pages. The pulls gather B-wide rows of a [E, B] buffer at
// random: with 4 KiB pages nearly every gather from a 256 MB buffer misses the TLB (a page walk,
// nested under a hypervisor), and every fresh buffer costs one page fault per 4 KiB when first
// written. A buffer of 2 MiB pages (madvise(MADV_HUGEPAGE), as torch's own THP_MEM_ALLOC_ENABLE
// does for every allocation) has neither cost: on zipf-0.8-10M, B = 64 fp32, in one process,
// forward + backward with a row-major x and gradient took 2,479 ms with these buffers on huge
// pages against 3,289 without, the transpose of x 84 against 186, the inverse pull written
// row-major 863 against 1,016 (experiments/rowmajor_layout.py --huge-pages). So the CPU kernels
// allocate the [E, B] buffers they return, and the transposed copies they gather from, here. A
// system with transparent huge pages off (or not Linux) gets ordinary pages from the same call;
// KGQA_HUGE_PAGES=0 in the environment turns it off too (read at each allocation).
#pragma once

#include <ATen/EmptyTensor.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/Allocator.h>

#include <cstdlib>
#include <cstring>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace kgqa {

constexpr size_t kHugePageBytes = size_t(2) << 20;

// posix_memalign on a 2 MiB boundary, then madvise(MADV_HUGEPAGE) on the whole huge pages the
// buffer covers. Its tail, short of a huge page, keeps ordinary pages: a huge page touched at all is
// resident whole, and MetaQA's 11 MB [E, B] buffers would each carry up to 2 MiB more (their
// forward + backward peaked at 36 MiB with the tail on a huge page, 1/9.4 of torch.sparse's).
struct HugePageAllocator final : c10::Allocator {
  c10::DataPtr allocate(size_t n) override {
    const c10::Device cpu(c10::DeviceType::CPU);
    if (n == 0) return {nullptr, nullptr, &release, cpu};
    void* p = nullptr;
    TORCH_CHECK(posix_memalign(&p, kHugePageBytes, n) == 0 && p != nullptr, "cannot allocate ", n,
                " bytes of CPU memory");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    // Advice only: where it is refused, the pages are ordinary ones.
    madvise(p, n / kHugePageBytes * kHugePageBytes, MADV_HUGEPAGE);
#endif
    return {p, p, &release, cpu};
  }
  static void release(void* p) { std::free(p); }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
};

inline HugePageAllocator* huge_page_allocator() {
  static HugePageAllocator allocator;  // never destroyed before the tensors it allocated
  return &allocator;
}

// Whether KGQA_HUGE_PAGES leaves huge pages on (unset, or anything but "0").
inline bool huge_pages_enabled() {
  const char* v = std::getenv("KGQA_HUGE_PAGES");
  return v == nullptr || std::strcmp(v, "0") != 0;
}

// at::empty(sizes, options), contiguous; a CPU tensor of at least two huge pages comes from
// HugePageAllocator (a smaller one would have at most one huge page, its tail being ordinary pages).
inline at::Tensor empty_large(at::IntArrayRef sizes, const at::TensorOptions& options) {
  if (!options.device().is_cpu() || !huge_pages_enabled()) return at::empty(sizes, options);
  size_t bytes = options.dtype().itemsize();
  for (int64_t s : sizes) bytes *= size_t(s);
  if (bytes < 2 * kHugePageBytes) return at::empty(sizes, options);
  return at::detail::empty_generic(sizes, huge_page_allocator(), c10::DispatchKeySet(c10::DispatchKey::CPU),
                                   c10::typeMetaToScalarType(options.dtype()), std::nullopt);
}

}  // namespace kgqa
