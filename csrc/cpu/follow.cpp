// CPU kernels of follow (forward pull, also its dx), follow_backward_r (dr) and follow_backward_w
// (dw): checks,
// allocation, and the choice between the baseline and the AVX2 copy of the loops
// (follow_kernels.h; csrc/cpu/isa.h).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "../bounds.h"
#include "../checks.h"
#include "../huge_pages.h"
#include "follow_kernels.h"
#include "isa.h"

namespace kgqa {

#if KGQA_HAVE_AVX2_KERNELS
namespace cpu_avx2 {  // avx2.cpp: follow_kernels.h compiled for AVX2
void pull_into(const at::Tensor& x, const at::Tensor& r, const PullIndex& idx, at::Tensor& y, BoundsFlag& flag);
void dr_into(const at::Tensor& a, const at::Tensor& b, at::TensorList kb, at::Tensor& dr, BoundsFlag& flag);
void dw_into(const at::Tensor& a, const at::Tensor& r, const at::Tensor& c, at::TensorList kb, at::Tensor& dw,
             BoundsFlag& flag);
}  // namespace cpu_avx2
#endif

namespace cpu {
namespace {

// With row_major, y is the transpose of a [B, E] buffer, written directly (pull_into): this
// replaces a transpose of the whole output (experiments/rowmajor_layout.py).
at::Tensor follow_cpu(const at::Tensor& x_in, const at::Tensor& r_in, at::TensorList kb, bool inverse,
                      bool row_major) {
  check_kb(kb, "follow");
  const int64_t E = kb_num_entities(kb), R = kb_num_relations(kb);
  const PullOperands in = pull_operands("follow", kb, x_in, "x", E, r_in, "r", R);
  const int64_t B = in.B;
  at::Tensor y = row_major ? empty_large({B, E}, in.a.options()).t() : empty_large({E, B}, in.a.options());
  if (B == 0) return y;
  const PullIndex idx = pull_index(kb, inverse);
  BoundsFlag flag;
  KGQA_BY_ISA(pull_into, in.a, in.b, idx, y, flag);
  flag.check("follow");
  return y;
}

at::Tensor follow_backward_r_cpu(const at::Tensor& x_in, const at::Tensor& g_in, at::TensorList kb,
                                 bool inverse) {
  check_kb(kb, "follow_backward_r");
  const int64_t E = kb_num_entities(kb), R = kb_num_relations(kb);
  const PullOperands in = pull_operands("follow_backward_r", kb, x_in, "x", E, g_in, "grad", E);
  at::Tensor dr = at::empty({R, in.B}, in.a.options());
  if (in.B == 0) return dr;
  // The product is symmetric: subjects read `a`, objects read `b`.
  const at::Tensor& a = inverse ? in.b : in.a;
  const at::Tensor& b = inverse ? in.a : in.b;
  BoundsFlag flag;
  KGQA_BY_ISA(dr_into, a, b, kb, dr, flag);
  flag.check("follow_backward_r");
  return dr;
}

at::Tensor follow_backward_w_cpu(const at::Tensor& x_in, const at::Tensor& r_in, const at::Tensor& g_in,
                                 at::TensorList kb, bool inverse) {
  check_kb(kb, "follow_backward_w");
  const int64_t E = kb_num_entities(kb), R = kb_num_relations(kb);
  const PullOperands xr = pull_operands("follow_backward_w", kb, x_in, "x", E, r_in, "r", R);
  // x checked against grad too, in its batch-innermost copy (no second transpose of a row-major x).
  const PullOperands xg = pull_operands("follow_backward_w", kb, xr.a, "x", E, g_in, "grad", E);
  at::Tensor dw = at::empty({kb[SUBJ_OBJ].numel()}, xr.a.options());
  if (dw.numel() == 0) return dw;
  if (xr.B == 0) return dw.zero_();
  BoundsFlag flag;
  // Subjects read x and objects grad; inverse swaps them.
  KGQA_BY_ISA(dw_into, inverse ? xg.b : xr.a, xr.b, inverse ? xr.a : xg.b, kb, dw, flag);
  flag.check("follow_backward_w");
  return dw;
}

}  // namespace

TORCH_LIBRARY_IMPL(kgqa_kernels, CPU, m) {
  m.impl("follow", &follow_cpu);
  m.impl("follow_backward_r", &follow_backward_r_cpu);
  m.impl("follow_backward_w", &follow_backward_w_cpu);
}

}  // namespace cpu
}  // namespace kgqa
