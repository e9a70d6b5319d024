// The parallel loops of follow's CPU kernels (the pull, also its dx; dr's chunk sums; dw's dot
// products), in the
// namespace KGQA_CPU_NS. Compiled twice: follow.cpp includes this as kgqa::cpu (baseline x86-64),
// csrc/cpu/avx2.cpp as kgqa::cpu_avx2 under GCC's target pragma (csrc/cpu/isa.h says why and how
// one is chosen). Each TU includes it once; the functions are not inline, so no other may.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

#include <vector>

#include "../bounds.h"
#include "../kb_layout.h"
#include "pull_row.h"

namespace kgqa {
namespace KGQA_CPU_NS {

// y's rows (E of them, at y.stride(0); batch columns at y.stride(1)) = the pull of x [E, B]
// (contiguous) through r [R, B] over idx; an id out of range is reported to flag and that thread
// stops. With y the transpose of a [B, E] buffer (row-major output), a row's B values go to B
// lines, which the next rows of the same thread fill, so the writes stay in cache.
void pull_into(const at::Tensor& x, const at::Tensor& r, const PullIndex& idx, at::Tensor& y, BoundsFlag& flag) {
  const int64_t B = x.size(1), E = y.size(0);
  const int64_t row_stride = y.stride(0), col_stride = y.stride(1);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "follow", [&] {
    AT_DISPATCH_INDEX_TYPES(idx.col.scalar_type(), "follow", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const PullPtrs<index_t> ix = pull_ptrs<index_t>(idx);
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* rp = r.data_ptr<scalar_t>();
      scalar_t* yp = y.data_ptr<scalar_t>();
      parallel_over_segments(ix.ptr, E, [&](int64_t row0, int64_t row1) {
        acc_t acc[kBatchTile];
        for (int64_t row = row0; row < row1; ++row) {
          if (const int32_t bad = check_segment(ix, row)) return flag.report(bad);
          for (int64_t b0 = 0; b0 < B; b0 += kBatchTile) {
            const int64_t bt = std::min(kBatchTile, B - b0);
            if (const int32_t bad = pull_row<scalar_t, index_t>(acc, row, b0, bt, B, ix, xp, rp)) return flag.report(bad);
            scalar_t* out = yp + row * row_stride + b0 * col_stride;
            if (col_stride == 1) {
              for (int64_t j = 0; j < bt; ++j) out[j] = scalar_t(acc[j]);
            } else {
              for (int64_t j = 0; j < bt; ++j) out[j * col_stride] = scalar_t(acc[j]);
            }
          }
        }
      });
    });
  });
}

// dr [R, B] (contiguous) = sum over facts of a[subj] * (w * b[obj]), a and b [E, B] contiguous.
// Facts sorted by (p, s, o) are cut into the KB's chunks (kb_layout.h: REL_CHUNK_PTR); each chunk
// reduces into its own partial row and a second pass adds a relation's partials in chunk order.
// The cut depends only on the KB, so the result is bitwise the same for any thread count, and
// relations with huge segments still spread over all threads.
void dr_into(const at::Tensor& a, const at::Tensor& b, at::TensorList kb, at::Tensor& dr, BoundsFlag& flag) {
  const int64_t B = a.size(1), E = kb_num_entities(kb);
  const RelChunks rc = rel_chunks(kb);
  const bool weighted = kb[REL_WEIGHT].numel() > 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "follow_backward_r", [&] {
    AT_DISPATCH_INDEX_TYPES(kb[REL_SUBJ].scalar_type(), "follow_backward_r", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const index_t* subj = kb[REL_SUBJ].data_ptr<index_t>();
      const index_t* obj = kb[REL_OBJ].data_ptr<index_t>();
      const float* w = weighted ? kb[REL_WEIGHT].data_ptr<float>() : nullptr;
      const scalar_t* ap = a.data_ptr<scalar_t>();
      const scalar_t* bp = b.data_ptr<scalar_t>();
      std::vector<acc_t> partial(rc.chunks * B);
      parallel_dynamic(rc.chunks, [&](int64_t c) {
        int64_t begin, end;
        if (const int32_t bad = rc.chunk_facts(c, begin, end)) return flag.report(bad);
        for (int64_t b0 = 0; b0 < B; b0 += kBatchTile) {
          const int64_t bt = std::min(kBatchTile, B - b0);
          const ChunkFacts<index_t> cf{subj, obj, w, begin, end, E};
          if (const int32_t bad = sum_chunk<scalar_t, index_t>(partial.data() + c * B + b0, cf, ap, bp, b0, bt, B)) {
            return flag.report(bad);
          }
        }
      });
      add_rel_partials(rc, partial.data(), B, dr.data_ptr<scalar_t>(), flag);
    });
  });
}

// Partial sums of dw's dot products: the batch is summed in kDotLanes interleaved lanes (j mod
// kDotLanes), then the lanes in order. The loop over a block of lanes vectorises, where one running
// sum is a chain of dependent adds; the order is fixed, so both ISA copies give the same bits.
constexpr int64_t kDotLanes = 8;

// dw [facts] (contiguous) in the subject order (s, p, o) = sum over b of a[s, b] * r[p, b] *
// c[o, b]: the gradient of the fact weights (follow_backward_w), a read at subjects and c at
// objects, all [rows, B] contiguous. Each fact's value is one dot product over the batch, written
// once; a subject's facts share its row of a, and the work is balanced over facts as the pulls'.
void dw_into(const at::Tensor& a, const at::Tensor& r, const at::Tensor& c, at::TensorList kb, at::Tensor& dw,
             BoundsFlag& flag) {
  const int64_t B = a.size(1), E = kb_num_entities(kb);
  const PullIndex idx = pull_index(kb, true);  // grouped by subject: col = object
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "follow_backward_w", [&] {
    AT_DISPATCH_INDEX_TYPES(idx.col.scalar_type(), "follow_backward_w", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const PullPtrs<index_t> ix = pull_ptrs<index_t>(idx);
      const scalar_t* ap = a.data_ptr<scalar_t>();
      const scalar_t* rp = r.data_ptr<scalar_t>();
      const scalar_t* cp = c.data_ptr<scalar_t>();
      scalar_t* out = dw.data_ptr<scalar_t>();
      // Every fact is written once when the segments tile the facts: they start at 0, end at the
      // last fact, and never decrease (check_segment, per row).
      if (KGQA_BOUNDS_CHECKS && !ix.tiles(E)) return flag.report(int32_t(ix.ptr_slot + 1));
      parallel_over_segments(ix.ptr, E, [&](int64_t row0, int64_t row1) {
        for (int64_t s = row0; s < row1; ++s) {
          if (const int32_t bad = check_segment(ix, s)) return flag.report(bad);
          const scalar_t* __restrict__ as = ap + s * B;
          for (int64_t f = ix.ptr[s]; f < ix.ptr[s + 1]; ++f) {
            if (const int32_t bad = ix.bad_fact(f)) return flag.report(bad);
            const int64_t o = ix.col[f], p = ix.rel[f];
            const scalar_t* __restrict__ cs = cp + o * B;
            const scalar_t* __restrict__ rs = rp + p * B;
            acc_t lane[kDotLanes] = {};
            int64_t j = 0;
            for (; j + kDotLanes <= B; j += kDotLanes) {
              for (int64_t k = 0; k < kDotLanes; ++k) {
                lane[k] += acc_t(as[j + k]) * acc_t(rs[j + k]) * acc_t(cs[j + k]);
              }
            }
            for (int64_t k = 0; j + k < B; ++k) lane[k] += acc_t(as[j + k]) * acc_t(rs[j + k]) * acc_t(cs[j + k]);
            acc_t sum = acc_t(0);
            for (int64_t k = 0; k < kDotLanes; ++k) sum += lane[k];
            out[f] = scalar_t(sum);
          }
        }
      });
    });
  });
}

}  // namespace KGQA_CPU_NS
}  // namespace kgqa
