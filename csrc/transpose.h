// Layout changes between what users pass and what the kernels read. Users build row-major [B, E]
// tensors; the kernels read [E, B], batch innermost, so an op receives the transpose of a user's x
// (strides (1, E)), and autograd hands back row-major gradients the same way. at::Tensor::
// contiguous() copies such a transpose with ATen's transpose copy, which is cache-blocked but runs
// on one thread; transpose_copy is the same blocked copy on all of torch's threads.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstdint>

#include "huge_pages.h"

namespace kgqa {

// out = src.t() for a contiguous CPU src [n, m] and a contiguous out [m, n] of its floating dtype,
// in tiles of kTile x kTile elements (a tile's source lines and destination rows stay in L1), tiles
// spread over torch's threads. `prefetch`: request the next tile's source spans (transpose_copy
// does; experiments/transpose_prefetch.py compares both).
template <bool prefetch>
inline void transpose_into(const at::Tensor& src, at::Tensor& out) {
  const int64_t n = src.size(0), m = src.size(1);
  constexpr int64_t kTile = 64;  // fp32: 16 KiB read and 16 KiB written per tile
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "transpose_copy", [&] {
    const scalar_t* s = src.data_ptr<scalar_t>();  // (i, j) at s[i * m + j]
    scalar_t* d = out.data_ptr<scalar_t>();         // (j, i) at d[j * n + i]
    at::parallel_for(0, (m + kTile - 1) / kTile, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t j0 = t * kTile, j1 = std::min(m, j0 + kTile);
        for (int64_t i0 = 0; i0 < n; i0 += kTile) {
          const int64_t i1 = std::min(n, i0 + kTile);
          // A tile reads a short span of each of its kTile source rows: more streams than the
          // hardware prefetcher follows, so the next tile's spans are requested now. The 64 x 1M
          // fp32 transpose into touched memory took 58 ms with this and 89 without; into fresh
          // memory (what an op gets) 194 and 230, most of it the first touch of the pages
          // (experiments/transpose_prefetch.py).
          if (prefetch && j1 < m) {
            const int64_t bytes = (std::min(m, j1 + kTile) - j1) * int64_t(sizeof(scalar_t));
            for (int64_t i = i0; i < i1; ++i) {
              const char* next = reinterpret_cast<const char*>(s + i * m + j1);
              for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(next + off);
            }
          }
          for (int64_t j = j0; j < j1; ++j) {
            scalar_t* __restrict__ row = d + j * n;
            for (int64_t i = i0; i < i1; ++i) row[i] = s[i * m + j];
          }
        }
      }
    });
  });
}

// src.t().contiguous(): [n, m] -> [m, n], contiguous; on the CPU by transpose_into on all threads.
inline at::Tensor transpose_copy(const at::Tensor& src_in) {
  TORCH_CHECK(src_in.dim() == 2, "transpose_copy(): src must be 2-D, got ", src_in.sizes());
  if (!src_in.device().is_cpu() || src_in.is_complex() || !at::isFloatingType(src_in.scalar_type())) {
    return src_in.t().contiguous();
  }
  const at::Tensor src = src_in.contiguous();
  at::Tensor out = empty_large({src.size(1), src.size(0)}, src.options());
  transpose_into<true>(src, out);
  return out;
}

// A [rows, B] operand made contiguous: the transpose of a row-major tensor by transpose_copy, any
// other layout by contiguous().
inline at::Tensor batch_innermost(const at::Tensor& t) {
  if (t.dim() == 2 && !t.is_contiguous() && t.stride(0) == 1 && t.stride(1) == t.size(0)) {
    return transpose_copy(t.t());
  }
  return t.contiguous();
}

}  // namespace kgqa
