// CPU kernels of follow_intersect and its backwards: the choice between the baseline and the AVX2
// copy of their loops (follow_intersect_kernels.h; csrc/cpu/isa.h).
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "follow_intersect_kernels.h"
#include "isa.h"

namespace kgqa {

#if KGQA_HAVE_AVX2_KERNELS
namespace cpu_avx2 {  // avx2.cpp: follow_intersect_kernels.h compiled for AVX2
std::tuple<at::Tensor, at::Tensor> follow_intersect_cpu(at::TensorList xs_in, at::TensorList rs_in,
                                                        at::TensorList kb, bool inverse,
                                                        c10::string_view tnorm_name, bool save_ties);
std::vector<at::Tensor> follow_intersect_backward_cpu(const at::Tensor& grad_in, at::TensorList xs_in,
                                                      at::TensorList rs_in, at::TensorList kb, bool inverse,
                                                      c10::string_view tnorm_name);
std::vector<at::Tensor> follow_intersect_backward_x_cpu(const at::Tensor& grad_in, const at::Tensor& ties,
                                                        at::TensorList xs_in, at::TensorList rs_in, at::TensorList kb,
                                                        bool inverse);
std::vector<at::Tensor> follow_intersect_backward_r_cpu(const at::Tensor& grad_in, const at::Tensor& ties,
                                                        at::TensorList xs_in, at::TensorList rs_in, at::TensorList kb,
                                                        bool inverse);
}  // namespace cpu_avx2
#endif

namespace {

std::tuple<at::Tensor, at::Tensor> follow_intersect(at::TensorList xs, at::TensorList rs, at::TensorList kb,
                                                    bool inverse, c10::string_view tnorm, bool save_ties) {
  return KGQA_BY_ISA(follow_intersect_cpu, xs, rs, kb, inverse, tnorm, save_ties);
}

std::vector<at::Tensor> follow_intersect_backward(const at::Tensor& grad, at::TensorList xs, at::TensorList rs,
                                                  at::TensorList kb, bool inverse, c10::string_view tnorm) {
  return KGQA_BY_ISA(follow_intersect_backward_cpu, grad, xs, rs, kb, inverse, tnorm);
}

std::vector<at::Tensor> follow_intersect_backward_x(const at::Tensor& grad, const at::Tensor& ties,
                                                    at::TensorList xs, at::TensorList rs, at::TensorList kb,
                                                    bool inverse) {
  return KGQA_BY_ISA(follow_intersect_backward_x_cpu, grad, ties, xs, rs, kb, inverse);
}

std::vector<at::Tensor> follow_intersect_backward_r(const at::Tensor& grad, const at::Tensor& ties,
                                                    at::TensorList xs, at::TensorList rs, at::TensorList kb,
                                                    bool inverse) {
  return KGQA_BY_ISA(follow_intersect_backward_r_cpu, grad, ties, xs, rs, kb, inverse);
}

}  // namespace

TORCH_LIBRARY_IMPL(kgqa_kernels, CPU, m) {
  m.impl("follow_intersect", &follow_intersect);
  m.impl("follow_intersect_backward", &follow_intersect_backward);
  m.impl("follow_intersect_backward_x", &follow_intersect_backward_x);
  m.impl("follow_intersect_backward_r", &follow_intersect_backward_r);
}

}  // namespace kgqa
