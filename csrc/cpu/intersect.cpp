// CPU kernels of intersect / union and their backward: elementwise over k same-shape tensors.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <vector>

#include "../checks.h"
#include "../tnorm.h"

namespace kgqa {
namespace cpu {
namespace {

constexpr int64_t kBlock = 1024;

template <typename scalar_t>
void combine_forward(const std::vector<at::Tensor>& xs, at::Tensor& out, TNorm tnorm) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = xs.size(), n = out.numel();
  std::vector<const scalar_t*> in(k);
  for (int64_t i = 0; i < k; ++i) in[i] = xs[i].data_ptr<scalar_t>();
  scalar_t* o = out.data_ptr<scalar_t>();
  at::parallel_for(0, n, 16 * kBlock, [&](int64_t e0, int64_t e1) {
    acc_t acc[kBlock];
    for (int64_t s = e0; s < e1; s += kBlock) {
      const int64_t m = std::min(kBlock, e1 - s);
      // Min/max/product work on the input values; the probabilistic sum carries 1 - x.
      const bool co = tnorm == TNorm::ProbSum;
      for (int64_t j = 0; j < m; ++j) acc[j] = co ? acc_t(1) - acc_t(in[0][s + j]) : acc_t(in[0][s + j]);
      for (int64_t i = 1; i < k; ++i) {
        const scalar_t* __restrict__ xi = in[i] + s;
        switch (tnorm) {
          case TNorm::Min: for (int64_t j = 0; j < m; ++j) acc[j] = nan_min(acc[j], acc_t(xi[j])); break;
          case TNorm::Max: for (int64_t j = 0; j < m; ++j) acc[j] = nan_max(acc[j], acc_t(xi[j])); break;
          case TNorm::Product: for (int64_t j = 0; j < m; ++j) acc[j] *= acc_t(xi[j]); break;
          case TNorm::ProbSum: for (int64_t j = 0; j < m; ++j) acc[j] *= acc_t(1) - acc_t(xi[j]); break;
        }
      }
      for (int64_t j = 0; j < m; ++j) o[s + j] = scalar_t(co ? acc_t(1) - acc[j] : acc[j]);
    }
  });
}

// Min/max: the gradient goes to the inputs equal to the output, split evenly among ties:
// grad / count * mask, the formula of torch's amin/amax backward (a NaN output gives NaN).
// Products: d/dx_i = prod over j != i of x_j (or of 1 - x_j), from prefix and suffix products
// so that zeros need no division.
template <typename scalar_t>
void combine_backward(const at::Tensor& grad, const std::vector<at::Tensor>& xs, const at::Tensor& out,
                      std::vector<at::Tensor>& dxs, TNorm tnorm) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = xs.size(), n = out.numel();
  std::vector<const scalar_t*> in(k);
  std::vector<scalar_t*> dx(k);
  for (int64_t i = 0; i < k; ++i) {
    in[i] = xs[i].data_ptr<scalar_t>();
    dx[i] = dxs[i].data_ptr<scalar_t>();
  }
  const scalar_t* g = grad.data_ptr<scalar_t>();
  const scalar_t* o = out.data_ptr<scalar_t>();
  at::parallel_for(0, n, 16 * kBlock, [&](int64_t e0, int64_t e1) {
    std::vector<acc_t> suffix((k + 1) * kBlock);
    acc_t tmp[kBlock];
    for (int64_t s = e0; s < e1; s += kBlock) {
      const int64_t m = std::min(kBlock, e1 - s);
      if (tnorm == TNorm::Min || tnorm == TNorm::Max) {
        for (int64_t j = 0; j < m; ++j) tmp[j] = acc_t(0);  // tie count
        for (int64_t i = 0; i < k; ++i) {
          for (int64_t j = 0; j < m; ++j) tmp[j] += acc_t(in[i][s + j] == o[s + j]);
        }
        for (int64_t j = 0; j < m; ++j) tmp[j] = acc_t(g[s + j]) / tmp[j];
        for (int64_t i = 0; i < k; ++i) {
          for (int64_t j = 0; j < m; ++j) dx[i][s + j] = scalar_t(tmp[j] * acc_t(in[i][s + j] == o[s + j]));
        }
      } else {
        const bool co = tnorm == TNorm::ProbSum;
        auto val = [&](int64_t i, int64_t j) { return co ? acc_t(1) - acc_t(in[i][s + j]) : acc_t(in[i][s + j]); };
        acc_t* suf = suffix.data();  // suf[i * kBlock + j] = prod over i' >= i
        for (int64_t j = 0; j < m; ++j) suf[k * kBlock + j] = acc_t(1);
        for (int64_t i = k - 1; i >= 0; --i) {
          for (int64_t j = 0; j < m; ++j) suf[i * kBlock + j] = suf[(i + 1) * kBlock + j] * val(i, j);
        }
        for (int64_t j = 0; j < m; ++j) tmp[j] = acc_t(g[s + j]);  // grad * prefix product
        for (int64_t i = 0; i < k; ++i) {
          for (int64_t j = 0; j < m; ++j) {
            dx[i][s + j] = scalar_t(tmp[j] * suf[(i + 1) * kBlock + j]);
            tmp[j] *= val(i, j);
          }
        }
      }
    }
  });
}

at::Tensor combine_cpu(const char* op, at::TensorList xs_in, c10::string_view tnorm_name, bool is_union) {
  const TNorm tnorm = parse_tnorm(op, tnorm_name, is_union);
  const auto xs = common_layout(op, xs_in);
  at::Tensor out = at::empty_like(xs[0]);
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "combine",
                                  [&] { combine_forward<scalar_t>(xs, out, tnorm); });
  return out;
}

std::vector<at::Tensor> combine_backward_cpu(const char* op, const at::Tensor& grad, at::TensorList xs_in,
                                             const at::Tensor& out_in, c10::string_view tnorm_name,
                                             bool is_union) {
  const TNorm tnorm = parse_tnorm(op, tnorm_name, is_union);
  const CombineBackwardArgs a = combine_backward_layout(op, xs_in, out_in, grad);
  const at::Tensor &g = a.grad, &out = a.out;
  const std::vector<at::Tensor>& all = a.xs;
  std::vector<at::Tensor> dxs;
  for (const auto& x : all) dxs.push_back(at::empty_like(x));
  if (out.numel() == 0) return dxs;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "combine",
                                  [&] { combine_backward<scalar_t>(g, all, out, dxs, tnorm); });
  return dxs;
}

at::Tensor intersect_cpu(at::TensorList xs, c10::string_view tnorm) {
  return combine_cpu("intersect", xs, tnorm, false);
}
at::Tensor union_cpu(at::TensorList xs, c10::string_view tnorm) { return combine_cpu("union", xs, tnorm, true); }
std::vector<at::Tensor> intersect_backward_cpu(const at::Tensor& grad, at::TensorList xs, const at::Tensor& out,
                                               c10::string_view tnorm) {
  return combine_backward_cpu("intersect_backward", grad, xs, out, tnorm, false);
}
std::vector<at::Tensor> union_backward_cpu(const at::Tensor& grad, at::TensorList xs, const at::Tensor& out,
                                           c10::string_view tnorm) {
  return combine_backward_cpu("union_backward", grad, xs, out, tnorm, true);
}

}  // namespace

TORCH_LIBRARY_IMPL(kgqa_kernels, CPU, m) {
  m.impl("intersect", &intersect_cpu);
  m.impl("union", &union_cpu);
  m.impl("intersect_backward", &intersect_backward_cpu);
  m.impl("union_backward", &union_backward_cpu);
}

}  // namespace cpu
}  // namespace kgqa
