// CPU kernels of follow_intersect: k follows over one KB combined by a t-norm row by row, so the
// k follow outputs exist only as one batch tile of accumulators per thread.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "../kb_layout.h"
#include "../tnorm.h"
#include "pull_row.h"

namespace kgqa {
namespace cpu {
namespace {

template <typename scalar_t, typename index_t, typename Fn>
void for_each_row_tile(const Branches& br, const PullIndex& idx, int64_t E, Fn&& fn) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = br.xs.size(), B = br.B;
  std::vector<const scalar_t*> xp(k), rp(k);
  for (int64_t i = 0; i < k; ++i) {
    xp[i] = br.xs[i].data_ptr<scalar_t>();
    rp[i] = br.rs[i].data_ptr<scalar_t>();
  }
  const PullPtrs<index_t> ix = pull_ptrs<index_t>(idx);
  const int64_t nnz = ix.ptr[E];
  parallel_over_segments(ix.ptr, E, [&](int64_t row0, int64_t row1) {
    std::vector<acc_t> ys(k * kBatchTile);  // the k follow outputs of one tile
    acc_t run[kBatchTile];
    for (int64_t row = row0; row < row1; ++row) {
      for (int64_t b0 = 0; b0 < B; b0 += kBatchTile) {
        const int64_t bt = std::min(kBatchTile, B - b0);
        // The k gathers of a fact come from k different tensors, and a row's k passes are long:
        // out-of-order execution alone overlaps too few cache misses, so the rows that the facts
        // kPrefetchFacts ahead read are requested now (each fact once over the sweep).
        const int64_t ahead_end = std::min(ix.ptr[row + 1] + kPrefetchFacts, nnz);
        for (int64_t f = ix.ptr[row] + kPrefetchFacts; f < ahead_end; ++f) {
          for (int64_t i = 0; i < k; ++i) prefetch_span(xp[i] + int64_t(ix.col[f]) * B + b0, bt * int64_t(sizeof(scalar_t)));
        }
        for (int64_t i = 0; i < k; ++i) {
          pull_row<scalar_t, index_t>(ys.data() + i * kBatchTile, run, row, b0, bt, B, ix, xp[i], rp[i]);
        }
        fn(row, b0, bt, ys.data());
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> follow_intersect_cpu(at::TensorList xs_in, at::TensorList rs_in,
                                                        at::TensorList kb, bool inverse,
                                                        c10::string_view tnorm_name, bool save_ties) {
  const TNorm tnorm = parse_tnorm("follow_intersect", tnorm_name, false);
  const Branches br = check_branches("follow_intersect", xs_in, rs_in, kb);
  const int64_t E = kb_num_entities(kb), B = br.B, k = br.xs.size();
  TORCH_CHECK(!save_ties || (tnorm == TNorm::Min && k <= kMaxTieBranches),
              "follow_intersect(): save_ties needs tnorm 'min' and at most ", kMaxTieBranches, " branches");
  at::Tensor out = at::empty({E, B}, br.xs[0].options());
  at::Tensor ties = at::empty({save_ties ? E : 0, save_ties ? B : 0}, br.xs[0].options().dtype(at::kByte));
  if (B == 0) return {out, ties};
  const PullIndex idx = pull_index(kb, inverse);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "follow_intersect", [&] {
    AT_DISPATCH_INDEX_TYPES(idx.col.scalar_type(), "follow_intersect", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      scalar_t* op = out.data_ptr<scalar_t>();
      uint8_t* tp = save_ties ? ties.data_ptr<uint8_t>() : nullptr;
      for_each_row_tile<scalar_t, index_t>(br, idx, E, [&](int64_t row, int64_t b0, int64_t bt, acc_t* ys) {
        // Branches outer, batch inner: the inner loops vectorise.
        acc_t v[kBatchTile];
        for (int64_t j = 0; j < bt; ++j) v[j] = ys[j];
        for (int64_t i = 1; i < k; ++i) {
          const acc_t* __restrict__ yi = ys + i * kBatchTile;
          if (tnorm == TNorm::Min) {
            for (int64_t j = 0; j < bt; ++j) v[j] = nan_min(v[j], yi[j]);
          } else {
            for (int64_t j = 0; j < bt; ++j) v[j] *= yi[j];
          }
        }
        scalar_t* o = op + row * B + b0;
        for (int64_t j = 0; j < bt; ++j) o[j] = scalar_t(v[j]);
        if (tp) {
          // Which branches equal the minimum, compared in the output dtype as intersect(follow(...))
          // compares them; NaN matches none. The backward needs nothing else.
          uint8_t* t = tp + row * B + b0;
          for (int64_t j = 0; j < bt; ++j) t[j] = 0;
          for (int64_t i = 0; i < k; ++i) {
            const acc_t* yi = ys + i * kBatchTile;
            for (int64_t j = 0; j < bt; ++j) {
              t[j] |= uint8_t(acc_t(scalar_t(yi[j])) == acc_t(o[j])) << i;
            }
          }
        }
      });
    });
  });
  return {out, ties};
}

// Returns d loss / d follow_i for each branch, recomputing the follows instead of storing them.
// The combination mirrors intersect_backward: even split among ties for min, products of the other
// branches for product. Ties and the product are taken on the follow outputs rounded to the input
// dtype, exactly as intersect(follow(...), ...) sees them.
std::vector<at::Tensor> follow_intersect_backward_cpu(const at::Tensor& grad_in, at::TensorList xs_in,
                                                      at::TensorList rs_in, at::TensorList kb, bool inverse,
                                                      c10::string_view tnorm_name) {
  const TNorm tnorm = parse_tnorm("follow_intersect_backward", tnorm_name, false);
  const Branches br = check_branches("follow_intersect_backward", xs_in, rs_in, kb);
  const int64_t E = kb_num_entities(kb), B = br.B, k = br.xs.size();
  const at::Tensor grad = check_branch_grad("follow_intersect_backward", grad_in, br, kb);
  std::vector<at::Tensor> gys;
  for (int64_t i = 0; i < k; ++i) gys.push_back(at::empty({E, B}, grad.options()));
  if (B == 0) return gys;
  const PullIndex idx = pull_index(kb, inverse);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "follow_intersect_backward", [&] {
    AT_DISPATCH_INDEX_TYPES(idx.col.scalar_type(), "follow_intersect_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const scalar_t* gp = grad.data_ptr<scalar_t>();
      std::vector<scalar_t*> gyp(k);
      for (int64_t i = 0; i < k; ++i) gyp[i] = gys[i].data_ptr<scalar_t>();
      for_each_row_tile<scalar_t, index_t>(br, idx, E, [&](int64_t row, int64_t b0, int64_t bt, acc_t* ys) {
        const int64_t base = row * B + b0;
        const scalar_t* __restrict__ g = gp + base;
        for (int64_t i = 0; i < k; ++i) {  // round to what intersect(follow(...)) would see
          acc_t* yi = ys + i * kBatchTile;
          for (int64_t j = 0; j < bt; ++j) yi[j] = acc_t(scalar_t(yi[j]));
        }
        acc_t v[kBatchTile], share[kBatchTile];
        if (tnorm == TNorm::Min) {
          for (int64_t j = 0; j < bt; ++j) v[j] = ys[j];
          for (int64_t i = 1; i < k; ++i) {
            for (int64_t j = 0; j < bt; ++j) v[j] = nan_min(v[j], ys[i * kBatchTile + j]);
          }
          for (int64_t j = 0; j < bt; ++j) share[j] = acc_t(0);  // number of tied branches
          for (int64_t i = 0; i < k; ++i) {
            for (int64_t j = 0; j < bt; ++j) share[j] += acc_t(ys[i * kBatchTile + j] == v[j]);
          }
          for (int64_t j = 0; j < bt; ++j) share[j] = acc_t(g[j]) / share[j];
          for (int64_t i = 0; i < k; ++i) {
            scalar_t* __restrict__ out = gyp[i] + base;
            for (int64_t j = 0; j < bt; ++j) out[j] = scalar_t(share[j] * acc_t(ys[i * kBatchTile + j] == v[j]));
          }
        } else {
          // k is small: the product of the other branches, without division so zeros are exact.
          for (int64_t i = 0; i < k; ++i) {
            for (int64_t j = 0; j < bt; ++j) v[j] = acc_t(g[j]);
            for (int64_t m = 0; m < k; ++m) {
              if (m == i) continue;
              for (int64_t j = 0; j < bt; ++j) v[j] *= ys[m * kBatchTile + j];
            }
            scalar_t* __restrict__ out = gyp[i] + base;
            for (int64_t j = 0; j < bt; ++j) out[j] = scalar_t(v[j]);
          }
        }
      });
    });
  });
  return gys;
}

}  // namespace

TORCH_LIBRARY_IMPL(kgqa_kernels, CPU, m) {
  m.impl("follow_intersect", &follow_intersect_cpu);
  m.impl("follow_intersect_backward", &follow_intersect_backward_cpu);
}

}  // namespace cpu
}  // namespace kgqa
