// The loops of follow_intersect's CPU kernels: k follows over one KB combined by a t-norm row by
// row, so the k follow outputs exist only as one batch tile of accumulators per thread; and its
// backwards. In the namespace KGQA_CPU_NS, compiled twice like follow_kernels.h: as kgqa::cpu by
// follow_intersect.cpp, as kgqa::cpu_avx2 by avx2.cpp (csrc/cpu/isa.h). Each TU
// includes it once; the kernels are not inline, so no other may.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "../bounds.h"
#include "../checks.h"
#include "../huge_pages.h"
#include "../tnorm.h"
#include "pull_row.h"

namespace kgqa {
namespace KGQA_CPU_NS {

// Runs fn(row, b0, bt, ys) for every row and batch tile, ys holding the k follow outputs; reports a
// value out of range to `flag` instead (the caller checks it after).
template <typename scalar_t, typename index_t, typename Fn>
void for_each_row_tile(const Branches& br, const PullIndex& idx, int64_t E, BoundsFlag& flag, Fn&& fn) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = br.xs.size(), B = br.B;
  std::vector<const scalar_t*> xp(k), rp(k);
  for (int64_t i = 0; i < k; ++i) {
    xp[i] = br.xs[i].data_ptr<scalar_t>();
    rp[i] = br.rs[i].data_ptr<scalar_t>();
  }
  const PullPtrs<index_t> ix = pull_ptrs<index_t>(idx);
  parallel_over_segments(ix.ptr, E, [&](int64_t row0, int64_t row1) {
    std::vector<acc_t> ys(k * kBatchTile);  // the k follow outputs of one tile
    for (int64_t row = row0; row < row1; ++row) {
      if (const int32_t bad = check_segment(ix, row)) return flag.report(bad);
      for (int64_t b0 = 0; b0 < B; b0 += kBatchTile) {
        const int64_t bt = std::min(kBatchTile, B - b0);
        // The k gathers of a fact come from k different tensors, and a row's k passes are long:
        // out-of-order execution alone overlaps too few cache misses, so the rows that the facts
        // kPrefetchFacts ahead read are requested now (each fact once over the sweep). A prefetch
        // never faults, but only ids in range are used, so no address is formed out of bounds.
        const int64_t ahead_begin = ix.ptr[row] + kPrefetchFacts;
        const int64_t ahead_end = std::min(ix.ptr[row + 1] + kPrefetchFacts, ix.facts);
        for (int64_t f = std::max<int64_t>(ahead_begin, 0); f < ahead_end; ++f) {
          const int64_t c = ix.col[f];
          if (!id_ok(c, ix.cols)) break;
          for (int64_t i = 0; i < k; ++i) prefetch_span(xp[i] + c * B + b0, bt * int64_t(sizeof(scalar_t)));
        }
        for (int64_t i = 0; i < k; ++i) {
          const int32_t bad = pull_row<scalar_t, index_t>(ys.data() + i * kBatchTile, row, b0, bt, B, ix, xp[i], rp[i]);
          if (bad) return flag.report(bad);
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
  TORCH_CHECK(!save_ties || (tnorm == TNorm::Min && k <= MAX_TIE_BRANCHES),
              "follow_intersect(): save_ties needs tnorm 'min' and at most ", MAX_TIE_BRANCHES, " branches");
  at::Tensor out = empty_large({E, B}, br.xs[0].options());
  at::Tensor ties = at::empty({save_ties ? E : 0, save_ties ? B : 0}, br.xs[0].options().dtype(at::kByte));
  if (B == 0) return {out, ties};
  const PullIndex idx = pull_index(kb, inverse);
  BoundsFlag flag;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "follow_intersect", [&] {
    AT_DISPATCH_INDEX_TYPES(idx.col.scalar_type(), "follow_intersect", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      scalar_t* op = out.data_ptr<scalar_t>();
      uint8_t* tp = save_ties ? ties.data_ptr<uint8_t>() : nullptr;
      for_each_row_tile<scalar_t, index_t>(br, idx, E, flag, [&](int64_t row, int64_t b0, int64_t bt, acc_t* ys) {
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
  flag.check("follow_intersect");
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
  for (int64_t i = 0; i < k; ++i) gys.push_back(empty_large({E, B}, grad.options()));
  if (B == 0) return gys;
  const PullIndex idx = pull_index(kb, inverse);
  BoundsFlag flag;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "follow_intersect_backward", [&] {
    AT_DISPATCH_INDEX_TYPES(idx.col.scalar_type(), "follow_intersect_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const scalar_t* gp = grad.data_ptr<scalar_t>();
      std::vector<scalar_t*> gyp(k);
      for (int64_t i = 0; i < k; ++i) gyp[i] = gys[i].data_ptr<scalar_t>();
      for_each_row_tile<scalar_t, index_t>(br, idx, E, flag, [&](int64_t row, int64_t b0, int64_t bt, acc_t* ys) {
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
  flag.check("follow_intersect_backward");
  return gys;
}

// ---- the backward from the tie mask --------------------------------------------------------------
// The gradients of the k follow outputs (grad shared among tied branches) are formed per gathered
// row and never stored, so one gather of grad and the mask serves all k branches, where the unfused
// backward writes k [E, B] tensors and then gathers each of them.

// The values each branch reads at one entity, over batch columns [b0, b0 + bt): values(e, ...)
// writes v_i for branches i < k at out + i * kBatchTile. Accumulators are stack arrays so the loops
// vectorise.

// v_i = the gradient of branch i's follow output, as intersect's backward rounds it: grad / (number
// of tied branches) where branch i is tied, else 0 (a NaN grad, or no tied branch, gives NaN).
template <typename scalar_t>
struct TieShares {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* grad;
  const uint8_t* ties;
  int64_t k, B;
  void prefetch(int64_t e, int64_t b0, int64_t bt) const {
    prefetch_span(grad + e * B + b0, bt * int64_t(sizeof(scalar_t)));
    prefetch_span(ties + e * B + b0, bt);
  }
  void values(int64_t e, int64_t b0, int64_t bt, acc_t* __restrict__ out) const {
    const scalar_t* __restrict__ g = grad + e * B + b0;
    const uint8_t* __restrict__ t = ties + e * B + b0;
    acc_t share[kBatchTile];
    for (int64_t j = 0; j < bt; ++j) share[j] = acc_t(0);
    for (int64_t i = 0; i < k; ++i) {  // a sum of bits, not popcount: this vectorises
      for (int64_t j = 0; j < bt; ++j) share[j] += acc_t((t[j] >> i) & 1);
    }
    for (int64_t j = 0; j < bt; ++j) share[j] = acc_t(g[j]) / share[j];
    for (int64_t i = 0; i < k; ++i) {
      acc_t* __restrict__ o = out + i * kBatchTile;
      for (int64_t j = 0; j < bt; ++j) o[j] = acc_t(scalar_t(share[j] * acc_t((t[j] >> i) & 1)));
    }
  }
};

// v_i = branch i's input x at the entity.
template <typename scalar_t>
struct BranchRows {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* const* xs;
  int64_t k, B;
  void prefetch(int64_t e, int64_t b0, int64_t bt) const {
    for (int64_t i = 0; i < k; ++i) prefetch_span(xs[i] + e * B + b0, bt * int64_t(sizeof(scalar_t)));
  }
  void values(int64_t e, int64_t b0, int64_t bt, acc_t* __restrict__ out) const {
    for (int64_t i = 0; i < k; ++i) {
      const scalar_t* __restrict__ x = xs[i] + e * B + b0;
      acc_t* __restrict__ o = out + i * kBatchTile;
      for (int64_t j = 0; j < bt; ++j) o[j] = acc_t(x[j]);
    }
  }
};

std::vector<at::Tensor> follow_intersect_backward_x_cpu(const at::Tensor& grad_in, const at::Tensor& ties,
                                                        at::TensorList xs_in, at::TensorList rs_in, at::TensorList kb,
                                                        bool inverse) {
  const TieBackwardArgs args = check_tie_backward("follow_intersect_backward_x", grad_in, ties, xs_in, rs_in, kb);
  const Branches& br = args.br;
  const at::Tensor& grad = args.grad;
  const int64_t E = kb_num_entities(kb), B = br.B, k = br.xs.size();
  std::vector<at::Tensor> dxs;
  for (int64_t i = 0; i < k; ++i) dxs.push_back(empty_large({E, B}, grad.options()));
  if (B == 0) return dxs;
  const PullIndex idx = pull_index(kb, !inverse);  // dx pulls the other way
  BoundsFlag flag;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "follow_intersect_backward_x", [&] {
    AT_DISPATCH_INDEX_TYPES(idx.col.scalar_type(), "follow_intersect_backward_x", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const PullPtrs<index_t> ix = pull_ptrs<index_t>(idx);
      const TieShares<scalar_t> shares{grad.data_ptr<scalar_t>(), ties.data_ptr<uint8_t>(), k, B};
      std::vector<const scalar_t*> rp(k);
      std::vector<scalar_t*> dp(k);
      for (int64_t i = 0; i < k; ++i) {
        rp[i] = br.rs[i].data_ptr<scalar_t>();
        dp[i] = dxs[i].data_ptr<scalar_t>();
      }
      parallel_over_segments(ix.ptr, E, [&](int64_t row0, int64_t row1) {
        acc_t acc[MAX_TIE_BRANCHES * kBatchTile], v[MAX_TIE_BRANCHES * kBatchTile];  // per branch
        acc_t run[MAX_TIE_BRANCHES * kBatchTile];
        for (int64_t row = row0; row < row1; ++row) {
          if (const int32_t bad = check_row(ix, row)) return flag.report(bad);
          const int64_t begin = ix.ptr[row], end = ix.ptr[row + 1];
          for (int64_t b0 = 0; b0 < B; b0 += kBatchTile) {
            const int64_t bt = std::min(kBatchTile, B - b0);
            std::fill_n(acc, k * kBatchTile, acc_t(0));
            // pull_row's order of operations, so dx is bitwise a follow of each branch's gradient: a
            // relation's run summed as w * v and multiplied by r once, term by term r * (w * v) for
            // a single fact or where a branch's run sum is not finite.
            for (int64_t f = begin; f < end;) {
              const index_t p = ix.rel[f];
              int64_t run_end = f + 1;
              while (run_end < end && ix.rel[run_end] == p) ++run_end;
              auto term_by_term = [&](int64_t i) {  // branch i's terms of this run, added to acc
                const scalar_t* __restrict__ r = rp[i] + int64_t(p) * B + b0;
                for (int64_t g = f; g < run_end; ++g) {
                  shares.values(int64_t(ix.col[g]), b0, bt, v);
                  const acc_t wf = ix.weight ? acc_t(ix.weight[g]) : acc_t(1);
                  for (int64_t j = 0; j < bt; ++j) acc[i * kBatchTile + j] += acc_t(r[j]) * (wf * v[i * kBatchTile + j]);
                }
              };
              if (run_end == f + 1) {
                for (int64_t i = 0; i < k; ++i) term_by_term(i);
              } else {
                std::fill_n(run, k * kBatchTile, acc_t(0));
                for (int64_t g = f; g < run_end; ++g) {
                  if (g + kPrefetchFacts < end) {
                    const int64_t ahead = ix.col[g + kPrefetchFacts];
                    if (id_ok(ahead, E)) shares.prefetch(ahead, b0, bt);
                  }
                  shares.values(int64_t(ix.col[g]), b0, bt, v);
                  const acc_t wf = ix.weight ? acc_t(ix.weight[g]) : acc_t(1);
                  for (int64_t i = 0; i < k; ++i) {
                    for (int64_t j = 0; j < bt; ++j) {
                      run[i * kBatchTile + j] += ix.weight ? wf * v[i * kBatchTile + j] : v[i * kBatchTile + j];
                    }
                  }
                }
                for (int64_t i = 0; i < k; ++i) {
                  if (!all_finite(run + i * kBatchTile, bt)) {  // as pull_row
                    term_by_term(i);
                    continue;
                  }
                  const scalar_t* __restrict__ r = rp[i] + int64_t(p) * B + b0;
                  for (int64_t j = 0; j < bt; ++j) acc[i * kBatchTile + j] += acc_t(r[j]) * run[i * kBatchTile + j];
                }
              }
              f = run_end;
            }
            for (int64_t i = 0; i < k; ++i) {
              scalar_t* __restrict__ out = dp[i] + row * B + b0;
              for (int64_t j = 0; j < bt; ++j) out[j] = scalar_t(acc[i * kBatchTile + j]);
            }
          }
        }
      });
    });
  });
  flag.check("follow_intersect_backward_x");
  return dxs;
}

// follow_backward_r's two passes (kb_layout.h: the chunk table), with k branches per pass: subjects
// read `at_subject`, objects read `at_object`, one of them the tie shares and the other the xs.
// The order of operations is dr's: at_subject * (w * at_object), in fact order.
template <typename scalar_t, typename index_t, typename AtSubject, typename AtObject>
void rel_chunks_backward(const char* op, at::TensorList kb, int64_t k, int64_t B, const AtSubject& at_subject,
                         const AtObject& at_object, const std::vector<scalar_t*>& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t E = kb_num_entities(kb), R = kb_num_relations(kb);
  const RelChunks rc = rel_chunks(kb);
  const index_t* subj = kb[REL_SUBJ].data_ptr<index_t>();
  const index_t* obj = kb[REL_OBJ].data_ptr<index_t>();
  const float* w = kb[REL_WEIGHT].numel() > 0 ? kb[REL_WEIGHT].data_ptr<float>() : nullptr;
  std::vector<acc_t> partial(rc.chunks * k * B);  // [chunk, branch, b]
  BoundsFlag flag;
  parallel_dynamic(rc.chunks, [&](int64_t c) {
    acc_t acc[MAX_TIE_BRANCHES * kBatchTile], sv[MAX_TIE_BRANCHES * kBatchTile], ov[MAX_TIE_BRANCHES * kBatchTile];
    int64_t begin, end;
    if (const int32_t bad = rc.chunk_facts(c, begin, end)) return flag.report(bad);
    for (int64_t b0 = 0; b0 < B; b0 += kBatchTile) {
      const int64_t bt = std::min(kBatchTile, B - b0);
      std::fill_n(acc, k * kBatchTile, acc_t(0));
      int64_t loaded = -1;  // the subject whose values sv holds: facts of one subject are adjacent
      for (int64_t f = begin; f < end; ++f) {
        const int64_t s = subj[f], o = obj[f];
        if (!id_ok(s, E)) return flag.report(REL_SUBJ + 1);
        if (!id_ok(o, E)) return flag.report(REL_OBJ + 1);
        if (f + kPrefetchFacts < end) {
          const int64_t so = subj[f + kPrefetchFacts], oo = obj[f + kPrefetchFacts];
          if (id_ok(oo, E)) at_object.prefetch(oo, b0, bt);
          if (id_ok(so, E)) at_subject.prefetch(so, b0, bt);
        }
        if (s != loaded) {
          at_subject.values(s, b0, bt, sv);
          loaded = s;
        }
        at_object.values(o, b0, bt, ov);
        const acc_t wf = w ? acc_t(w[f]) : acc_t(1);
        for (int64_t i = 0; i < k; ++i) {
          for (int64_t j = 0; j < bt; ++j) {
            acc[i * kBatchTile + j] += sv[i * kBatchTile + j] * (wf * ov[i * kBatchTile + j]);
          }
        }
      }
      for (int64_t i = 0; i < k; ++i) {
        std::copy_n(acc + i * kBatchTile, bt, partial.data() + (c * k + i) * B + b0);
      }
    }
  });
  at::parallel_for(0, R, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      if (const int32_t bad = rc.bad_relation(p)) {
        flag.report(bad);
        continue;
      }
      for (int64_t i = 0; i < k; ++i) {
        for (int64_t j = 0; j < B; ++j) {
          acc_t sum = acc_t(0);
          for (int64_t c = rc.chunk_ptr[p]; c < rc.chunk_ptr[p + 1]; ++c) sum += partial[(c * k + i) * B + j];
          out[i][p * B + j] = scalar_t(sum);
        }
      }
    }
  });
  flag.check(op);
}

std::vector<at::Tensor> follow_intersect_backward_r_cpu(const at::Tensor& grad_in, const at::Tensor& ties,
                                                        at::TensorList xs_in, at::TensorList rs_in, at::TensorList kb,
                                                        bool inverse) {
  const TieBackwardArgs args = check_tie_backward("follow_intersect_backward_r", grad_in, ties, xs_in, rs_in, kb);
  const Branches& br = args.br;
  const at::Tensor& grad = args.grad;
  const int64_t R = kb_num_relations(kb), B = br.B, k = br.xs.size();
  std::vector<at::Tensor> drs;
  for (int64_t i = 0; i < k; ++i) drs.push_back(at::empty({R, B}, grad.options()));
  if (B == 0) return drs;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "follow_intersect_backward_r", [&] {
    AT_DISPATCH_INDEX_TYPES(kb[REL_SUBJ].scalar_type(), "follow_intersect_backward_r", [&] {
      const TieShares<scalar_t> shares{grad.data_ptr<scalar_t>(), ties.data_ptr<uint8_t>(), k, B};
      std::vector<const scalar_t*> xp(k);
      std::vector<scalar_t*> dp(k);
      for (int64_t i = 0; i < k; ++i) {
        xp[i] = br.xs[i].data_ptr<scalar_t>();
        dp[i] = drs[i].data_ptr<scalar_t>();
      }
      const BranchRows<scalar_t> xrows{xp.data(), k, B};
      // The forward reads x at subjects and its output sits at objects; inverse swaps them.
      if (inverse) {
        rel_chunks_backward<scalar_t, index_t>("follow_intersect_backward_r", kb, k, B, shares, xrows, dp);
      } else {
        rel_chunks_backward<scalar_t, index_t>("follow_intersect_backward_r", kb, k, B, xrows, shares, dp);
      }
    });
  });
  return drs;
}

}  // namespace KGQA_CPU_NS
}  // namespace kgqa
