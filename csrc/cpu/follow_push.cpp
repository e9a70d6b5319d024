// CPU kernels of follow_push: follow from a sparse frontier. The work is proportional to the facts
// leaving the frontier, not to the KB, so a first hop from one entity per example costs
// microseconds where the dense pull reads every fact.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <numeric>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../bounds.h"
#include "../checks.h"

namespace kgqa {
namespace cpu {
namespace {

// A zero tensor whose pages are not written: calloc of a large block maps fresh pages that the OS
// supplies as zeros when first touched. The push writes only the rows it reaches, so a sparse
// output costs memory and time for those rows only (memset of a 1M x 64 float output alone takes
// longer than a one-hot push). Write, never read-modify-write, such pages: a read first maps the
// shared zero page and the write after it is a copy-on-write fault with a TLB shootdown across
// threads, about 10x the cost (measured: 8 ms instead of 0.4 ms for a 64-seed push).
at::Tensor lazy_zeros(at::IntArrayRef sizes, const at::TensorOptions& options) {
  int64_t numel = 1;
  for (int64_t s : sizes) numel *= s;
  const size_t bytes = size_t(numel) * options.dtype().itemsize();
  if (bytes < (size_t(1) << 20)) return at::zeros(sizes, options);
  void* data = std::calloc(bytes, 1);
  TORCH_CHECK(data != nullptr, "follow_push(): cannot allocate ", bytes, " bytes for the output");
  return at::from_blob(data, sizes, [](void* p) { std::free(p); }, options);
}

// Each example is pushed by one thread: its contributions, ordered by target and then by frontier
// and fact order, are summed in float32 or better and stored once, so every output element gets one
// deterministic sequence of additions (for a one-hot frontier the same as the pull's).
template <typename acc_t>
struct Contribution {
  int64_t target;
  acc_t value;
};

at::Tensor follow_push_cpu(const at::Tensor& ptr, const at::Tensor& ids, const at::Tensor& vals_in,
                           const at::Tensor& r_in, at::TensorList kb, bool inverse) {
  const Frontier fr = check_frontier("follow_push", ptr, ids, vals_in, r_in, kb);
  const at::Tensor &vals = fr.vals, &r = fr.r;
  const int64_t E = kb_num_entities(kb), B = fr.B;
  at::Tensor y = lazy_zeros({E, B}, vals.options());
  if (B == 0 || ids.numel() == 0) return y;
  const PullIndex push = pull_index(kb, !inverse);  // facts grouped by the entity they leave
  const int64_t* fp = fr.ptr.data_ptr<int64_t>();
  const int64_t* fi = fr.ids.data_ptr<int64_t>();
  BoundsFlag flag;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, vals.scalar_type(), "follow_push", [&] {
    AT_DISPATCH_INDEX_TYPES(push.col.scalar_type(), "follow_push", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const PullPtrs<index_t> ix = pull_ptrs<index_t>(push);
      const auto [fptr, col, rel, w] = std::make_tuple(ix.ptr, ix.col, ix.rel, ix.weight);
      const scalar_t* vp = vals.data_ptr<scalar_t>();
      const scalar_t* rp = r.data_ptr<scalar_t>();
      scalar_t* yp = y.data_ptr<scalar_t>();
      at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
        std::vector<Contribution<acc_t>> out;
        for (int64_t b = b0; b < b1; ++b) {
          out.clear();
          for (int64_t k = fp[b]; k < fp[b + 1]; ++k) {
            const int64_t s = fi[k];  // check_frontier has range-checked the frontier
            const acc_t v = acc_t(vp[k]);
            if (const int32_t bad = ix.bad_segment(fptr[s], fptr[s + 1])) return flag.report(bad);
            for (int64_t f = fptr[s]; f < fptr[s + 1]; ++f) {
              if (const int32_t bad = ix.bad_fact(f)) return flag.report(bad);
              out.push_back({int64_t(col[f]), acc_t(rp[int64_t(rel[f]) * B + b]) * (w ? acc_t(w[f]) * v : v)});
            }
          }
          std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& c) { return a.target < c.target; });
          for (size_t i = 0; i < out.size();) {
            acc_t sum = acc_t(0);
            size_t j = i;
            for (; j < out.size() && out[j].target == out[i].target; ++j) sum += out[j].value;
            yp[out[i].target * B + b] = scalar_t(sum);  // stores only: see lazy_zeros
            i = j;
          }
        }
      });
    });
  });
  flag.check("follow_push");
  return y;
}

// d vals[k] for frontier entry (b, s) = sum over facts (s, p, o) of w * r[p, b] * grad[o, b];
// dr[p, b] = sum over the frontier of vals * sum over facts (s, p, o) of w * grad[o, b].
std::tuple<at::Tensor, at::Tensor> follow_push_backward_cpu(const at::Tensor& grad_in, const at::Tensor& ptr,
                                                            const at::Tensor& ids, const at::Tensor& vals_in,
                                                            const at::Tensor& r_in, at::TensorList kb,
                                                            bool inverse) {
  const Frontier fr = check_frontier("follow_push_backward", ptr, ids, vals_in, r_in, kb);
  const int64_t R = kb_num_relations(kb), B = fr.B;
  const at::Tensor grad = check_frontier_grad("follow_push_backward", grad_in, fr, kb);
  const at::Tensor &vals = fr.vals, &r = fr.r;
  at::Tensor dvals = at::empty_like(vals);
  at::Tensor dr = at::empty({R, B}, r.options());
  const PullIndex push = pull_index(kb, !inverse);
  const int64_t* fp = fr.ptr.data_ptr<int64_t>();
  const int64_t* fi = fr.ids.data_ptr<int64_t>();
  BoundsFlag flag;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, vals.scalar_type(), "follow_push_backward", [&] {
    AT_DISPATCH_INDEX_TYPES(push.col.scalar_type(), "follow_push_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const PullPtrs<index_t> ix = pull_ptrs<index_t>(push);
      const auto [fptr, col, rel, w] = std::make_tuple(ix.ptr, ix.col, ix.rel, ix.weight);
      const scalar_t* vp = vals.data_ptr<scalar_t>();
      const scalar_t* rp = r.data_ptr<scalar_t>();
      const scalar_t* gp = grad.data_ptr<scalar_t>();
      scalar_t* dvp = dvals.data_ptr<scalar_t>();
      scalar_t* drp = dr.data_ptr<scalar_t>();
      at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
        std::vector<acc_t> dr_col(R);
        for (int64_t b = b0; b < b1; ++b) {
          std::fill(dr_col.begin(), dr_col.end(), acc_t(0));
          for (int64_t k = fp[b]; k < fp[b + 1]; ++k) {
            const int64_t s = fi[k];
            const acc_t v = acc_t(vp[k]);
            acc_t dv = acc_t(0);
            if (const int32_t bad = ix.bad_segment(fptr[s], fptr[s + 1])) return flag.report(bad);
            for (int64_t f = fptr[s]; f < fptr[s + 1]; ++f) {
              if (const int32_t bad = ix.bad_fact(f)) return flag.report(bad);
              const int64_t p = rel[f];
              const acc_t wg = (w ? acc_t(w[f]) : acc_t(1)) * acc_t(gp[int64_t(col[f]) * B + b]);
              dv += acc_t(rp[p * B + b]) * wg;
              dr_col[p] += v * wg;
            }
            dvp[k] = scalar_t(dv);
          }
          for (int64_t p = 0; p < R; ++p) drp[p * B + b] = scalar_t(dr_col[p]);
        }
      });
    });
  });
  flag.check("follow_push_backward");
  return {dvals, dr};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dense_frontier_cpu(const at::Tensor& x, int64_t max_nnz) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 2 && x.is_contiguous() && at::isFloatingType(x.scalar_type()),
              "dense_frontier(): x must be a row-major floating [B, E] CPU tensor");
  const int64_t B = x.size(0), E = x.size(1);
  const auto long_opts = x.options().dtype(at::kLong);
  std::vector<std::vector<int64_t>> found(B);
  std::atomic<int64_t> total{0};
  constexpr int64_t kBlock = 4096;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dense_frontier", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1 && total.load(std::memory_order_relaxed) <= max_nnz; ++b) {
        const scalar_t* row = xp + b * E;
        for (int64_t e0 = 0; e0 < E; e0 += kBlock) {
          const int64_t e1 = std::min(E, e0 + kBlock);
          // Most blocks are all zeros: OR the bit patterns, sign bit shifted out so -0.0 counts as
          // zero. Integer ORs vectorise; float compares with a bool reduction did not.
          using bits_t = std::conditional_t<sizeof(scalar_t) == 8, uint64_t,
                                            std::conditional_t<sizeof(scalar_t) == 4, uint32_t, uint16_t>>;
          const bits_t* bits = reinterpret_cast<const bits_t*>(row);
          bits_t any = 0;
          for (int64_t e = e0; e < e1; ++e) any |= bits_t(bits[e] << 1);
          if (!any) continue;
          int64_t n = 0;
          for (int64_t e = e0; e < e1; ++e) {
            if (row[e] != scalar_t(0)) {
              found[b].push_back(e);
              ++n;
            }
          }
          if (total.fetch_add(n, std::memory_order_relaxed) + n > max_nnz) break;
        }
      }
    });
  });
  const int64_t nnz = total.load();
  if (nnz > max_nnz) return {at::empty({0}, long_opts), at::empty({0}, long_opts), at::empty({0}, x.options())};
  at::Tensor ptr = at::empty({B + 1}, long_opts), ids = at::empty({nnz}, long_opts);
  at::Tensor vals = at::empty({nnz}, x.options());
  int64_t* pp = ptr.data_ptr<int64_t>();
  int64_t* ip = ids.data_ptr<int64_t>();
  pp[0] = 0;
  for (int64_t b = 0; b < B; ++b) {
    std::copy(found[b].begin(), found[b].end(), ip + pp[b]);
    pp[b + 1] = pp[b] + int64_t(found[b].size());
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dense_frontier", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* vp = vals.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t k = pp[b]; k < pp[b + 1]; ++k) vp[k] = xp[b * E + ip[k]];
    }
  });
  return {ptr, ids, vals};
}

}  // namespace

TORCH_LIBRARY_IMPL(kgqa_kernels, CPU, m) {
  m.impl("dense_frontier", &dense_frontier_cpu);
  m.impl("follow_push", &follow_push_cpu);
  m.impl("follow_push_backward", &follow_push_backward_cpu);
}

}  // namespace cpu
}  // namespace kgqa
