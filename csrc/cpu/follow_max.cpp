// CPU kernels of follow_max (follow's reduce="max" | "min") and its backward. Every pass is a pull
// over contiguous segments of one of the KB's orders, as follow's: each output element is written
// once, by one thread, in an order that depends only on the KB (bitwise deterministic, and the
// same order of operations as the GPU functors of csrc/cuda/follow_max.cuh).
//
// The backward recomputes each row's best and its ties (pass 1) rather than reading the forward's
// output: a 16-bit output is rounded, and a fact wins only where its term equals the best in the
// accumulation type. Then dx is a pull in the other direction, dr the chunked reduction of
// follow_backward_r and dw one sum per fact, each sending a row's gradient share to the facts whose
// term equals the best.
//
// Baseline x86-64 only (no AVX2 copy, unlike follow's sums): the compare-and-select per element
// does not gain from wider vectors the way the sums' multiply-adds did.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

// The compares of MaxTerm::take may raise FP exception flags (an ordered compare with NaN); nothing
// here reads those flags, and with GCC's default -ftrapping-math the loops over the batch stayed
// scalar rather than compute every compare and select. The values are IEEE's either way. Set
// before this package's headers, so that MaxTerm (csrc/follow_max.h) and the loops are compiled
// alike and inline into each other.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include "../bounds.h"
#include "../checks.h"
#include "../follow_max.h"
#include "../kb_layout.h"
#include "pull_row.h"

namespace kgqa {
namespace cpu {
namespace {

// fn(std::bool_constant<minimum>, std::bool_constant<add>): the loops get a MaxTerm of constants,
// so no flag is tested per element (a runtime flag in the inner loops kept them scalar).
template <typename Fn>
void with_max_mode(bool minimum, bool add, const Fn& fn) {
  if (minimum) {
    if (add) fn(std::true_type{}, std::true_type{}); else fn(std::true_type{}, std::false_type{});
  } else {
    if (add) fn(std::false_type{}, std::true_type{}); else fn(std::false_type{}, std::false_type{});
  }
}

// For every row of ix (E rows) and every tile of the batch: the best term over the row's facts and
// its number of ties, handed to out(row, b0, bt, best, ties, empty). x [E, B] and r [R, B]
// contiguous.
template <typename scalar_t, typename index_t, typename acc_t, typename Out>
void best_pass(const scalar_t* x, const scalar_t* r, const PullPtrs<index_t>& ix, int64_t rows, int64_t B,
               MaxTerm<acc_t> mt, BoundsFlag& flag, const Out& out) {
  parallel_over_segments(ix.ptr, rows, [&](int64_t row0, int64_t row1) {
    acc_t best[kBatchTile], ties[kBatchTile];
    for (int64_t row = row0; row < row1; ++row) {
      if (const int32_t bad = check_segment(ix, row)) return flag.report(bad);
      const int64_t begin = ix.ptr[row], end = ix.ptr[row + 1];
      for (int64_t b0 = 0; b0 < B; b0 += kBatchTile) {
        const int64_t bt = std::min(kBatchTile, B - b0);
        std::fill(best, best + bt, mt.start());
        std::fill(ties, ties + bt, acc_t(0));
        for (int64_t f = begin; f < end; ++f) {
          if (const int32_t bad = ix.bad_fact(f)) return flag.report(bad);
          const scalar_t* xs = x + int64_t(ix.col[f]) * B + b0;
          const scalar_t* rs = r + int64_t(ix.rel[f]) * B + b0;
          const acc_t w = ix.weight ? acc_t(ix.weight[f]) : acc_t(1);
          for (int64_t j = 0; j < bt; ++j) mt.take(mt.term(acc_t(xs[j]), acc_t(rs[j]), w), best[j], ties[j]);
        }
        out(row, b0, bt, best, ties, begin == end);
      }
    }
  });
}

at::Tensor follow_max_cpu(const at::Tensor& x_in, const at::Tensor& r_in, at::TensorList kb, bool inverse,
                          bool minimum, bool add) {
  check_kb(kb, "follow_max");
  const int64_t E = kb_num_entities(kb), R = kb_num_relations(kb);
  const PullOperands in = pull_operands("follow_max", kb, x_in, "x", E, r_in, "r", R);
  const int64_t B = in.B;
  at::Tensor y = at::empty({E, B}, in.a.options());
  if (B == 0) return y;
  const PullIndex idx = pull_index(kb, inverse);
  BoundsFlag flag;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.a.scalar_type(), "follow_max", [&] {
    AT_DISPATCH_INDEX_TYPES(idx.col.scalar_type(), "follow_max", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      scalar_t* yp = y.data_ptr<scalar_t>();
      with_max_mode(minimum, add, [&](auto kMin, auto kAdd) {
        best_pass<scalar_t, index_t, acc_t>(
            in.a.data_ptr<scalar_t>(), in.b.data_ptr<scalar_t>(), pull_ptrs<index_t>(idx), E, B,
            MaxTerm<acc_t>{kMin, kAdd}, flag,
            [&](int64_t row, int64_t b0, int64_t bt, const acc_t* best, const acc_t*, bool empty) {
              for (int64_t j = 0; j < bt; ++j) yp[row * B + b0 + j] = empty ? scalar_t(0) : scalar_t(best[j]);
            });
      });
    });
  });
  flag.check("follow_max");
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> follow_max_backward_cpu(
    const at::Tensor& x_in, const at::Tensor& r_in, const at::Tensor& g_in, at::TensorList kb, bool inverse,
    bool minimum, bool add, bool need_w) {
  const char* op = "follow_max_backward";
  check_kb(kb, op);
  const int64_t E = kb_num_entities(kb), R = kb_num_relations(kb), facts = kb[SUBJ_OBJ].numel();
  const PullOperands xr = pull_operands(op, kb, x_in, "x", E, r_in, "r", R);
  const PullOperands xg = pull_operands(op, kb, xr.a, "x", E, g_in, "grad", E);
  const at::Tensor &x = xr.a, &r = xr.b, &g = xg.b;
  const int64_t B = xr.B;
  at::Tensor dx = at::empty({E, B}, x.options());
  at::Tensor dr = at::empty({R, B}, x.options());
  at::Tensor dw = at::empty({need_w ? facts : 0}, x.options());
  if (B == 0) return {dx, dr, dw.zero_()};
  BoundsFlag flag;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "follow_max_backward", [&] {
    AT_DISPATCH_INDEX_TYPES(kb[OBJ_SUBJ].scalar_type(), "follow_max_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      with_max_mode(minimum, add, [&](auto kMin, auto kAdd) {
        const MaxTerm<acc_t> mt{kMin, kAdd};
        const auto acc_opts = x.options().dtype(c10::CppTypeToScalarType<acc_t>::value);
        const scalar_t* xp = x.data_ptr<scalar_t>();
        const scalar_t* rp = r.data_ptr<scalar_t>();
        const scalar_t* gp = g.data_ptr<scalar_t>();
        // Pass 1: each row's best term and its gradient share per winning fact, [E, B] in acc_t.
        at::Tensor best_t = at::empty({E, B}, acc_opts), share_t = at::empty({E, B}, acc_opts);
        acc_t* bestp = best_t.data_ptr<acc_t>();
        acc_t* sharep = share_t.data_ptr<acc_t>();
        best_pass<scalar_t, index_t, acc_t>(
            xp, rp, pull_ptrs<index_t>(pull_index(kb, inverse)), E, B, mt, flag,
            [&](int64_t row, int64_t b0, int64_t bt, const acc_t* best, const acc_t* ties, bool) {
              for (int64_t j = 0; j < bt; ++j) {
                const int64_t e = row * B + b0 + j;
                bestp[e] = best[j];
                sharep[e] = MaxTerm<acc_t>::share(acc_t(gp[e]), ties[j]);
              }
            });
        if (flag.code.load() != 0) return;
        // Pass 2, dx: pull over the rows the forward reads, each fact's destination compared.
        const PullPtrs<index_t> src = pull_ptrs<index_t>(pull_index(kb, !inverse));
        scalar_t* dxp = dx.data_ptr<scalar_t>();
        parallel_over_segments(src.ptr, E, [&](int64_t row0, int64_t row1) {
          acc_t acc[kBatchTile];
          for (int64_t row = row0; row < row1; ++row) {
            if (const int32_t bad = check_segment(src, row)) return flag.report(bad);
            for (int64_t b0 = 0; b0 < B; b0 += kBatchTile) {
              const int64_t bt = std::min(kBatchTile, B - b0);
              std::fill(acc, acc + bt, acc_t(0));
              const scalar_t* xs = xp + row * B + b0;
              for (int64_t f = src.ptr[row]; f < src.ptr[row + 1]; ++f) {
                if (const int32_t bad = src.bad_fact(f)) return flag.report(bad);
                const int64_t d = int64_t(src.col[f]) * B + b0;
                const scalar_t* rs = rp + int64_t(src.rel[f]) * B + b0;
                const acc_t w = src.weight ? acc_t(src.weight[f]) : acc_t(1);
                for (int64_t j = 0; j < bt; ++j) {
                  const acc_t rv = acc_t(rs[j]);
                  // The product formed for every fact and then selected: no control flow.
                  const acc_t v = sharep[d + j] * mt.d_x(rv, w);
                  acc[j] += mt.term(acc_t(xs[j]), rv, w) == bestp[d + j] ? v : acc_t(0);
                }
              }
              for (int64_t j = 0; j < bt; ++j) dxp[row * B + b0 + j] = scalar_t(acc[j]);
            }
          }
        });
        // Pass 3, dr: chunks of the (p, s, o) order reduce into partials, then each relation's
        // partials are added in chunk order (follow_backward_r's scheme: csrc/cpu/follow_kernels.h).
        const RelChunks rc = rel_chunks(kb);
        const index_t* rsubj = kb[REL_SUBJ].data_ptr<index_t>();
        const index_t* robj = kb[REL_OBJ].data_ptr<index_t>();
        const float* rw = kb[REL_WEIGHT].numel() > 0 ? kb[REL_WEIGHT].data_ptr<float>() : nullptr;
        std::vector<acc_t> partial(rc.chunks * B, acc_t(0));
        parallel_dynamic(rc.chunks, [&](int64_t c) {
          int64_t begin, end;
          if (const int32_t bad = rc.chunk_facts(c, begin, end)) return flag.report(bad);
          const scalar_t* rs = rp + rc.chunk_rel[c] * B;
          acc_t* out = partial.data() + c * B;
          for (int64_t f = begin; f < end; ++f) {
            const int64_t s = rsubj[f], o = robj[f];
            if (const int32_t bad = RelChunks::bad_fact_ids(s, o, E)) return flag.report(bad);
            const scalar_t* xs = xp + (inverse ? o : s) * B;
            const int64_t d = (inverse ? s : o) * B;
            const acc_t w = rw ? acc_t(rw[f]) : acc_t(1);
            for (int64_t j = 0; j < B; ++j) {
              const acc_t xv = acc_t(xs[j]);
              const acc_t v = sharep[d + j] * mt.d_r(xv, w);
              out[j] += mt.term(xv, acc_t(rs[j]), w) == bestp[d + j] ? v : acc_t(0);
            }
          }
        });
        add_rel_partials(rc, partial.data(), B, dr.data_ptr<scalar_t>(), flag);
        if (!need_w || facts == 0) return;
        // Pass 4, dw: one sum over the batch per fact, facts in the subject (canonical) order.
        const PullPtrs<index_t> sub = pull_ptrs<index_t>(pull_index(kb, true));  // col = object
        if (!sub.tiles(E)) return flag.report(int32_t(sub.ptr_slot + 1));
        scalar_t* dwp = dw.data_ptr<scalar_t>();
        parallel_over_segments(sub.ptr, E, [&](int64_t row0, int64_t row1) {
          for (int64_t s = row0; s < row1; ++s) {
            if (const int32_t bad = check_segment(sub, s)) return flag.report(bad);
            for (int64_t f = sub.ptr[s]; f < sub.ptr[s + 1]; ++f) {
              if (const int32_t bad = sub.bad_fact(f)) return flag.report(bad);
              const int64_t o = sub.col[f];
              const scalar_t* xs = xp + (inverse ? o : s) * B;
              const scalar_t* rs = rp + int64_t(sub.rel[f]) * B;
              const int64_t d = (inverse ? s : o) * B;
              const acc_t w = sub.weight ? acc_t(sub.weight[f]) : acc_t(1);
              acc_t sum = acc_t(0);
              for (int64_t j = 0; j < B; ++j) {
                const acc_t xv = acc_t(xs[j]), rv = acc_t(rs[j]);
                const acc_t v = sharep[d + j] * mt.d_w(xv, rv);
                sum += mt.term(xv, rv, w) == bestp[d + j] ? v : acc_t(0);
              }
              dwp[f] = scalar_t(sum);
            }
          }
        });
      });
    });
  });
  flag.check(op);
  return {dx, dr, dw};
}

}  // namespace

TORCH_LIBRARY_IMPL(kgqa_kernels, CPU, m) {
  m.impl("follow_max", &follow_max_cpu);
  m.impl("follow_max_backward", &follow_max_backward_cpu);
}

}  // namespace cpu
}  // namespace kgqa
