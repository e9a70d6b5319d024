// The package's CPU loops (csrc/cpu/follow_kernels.h, follow_intersect_kernels.h) built as a module
// for experiments/bounds_ab.py, which builds this file twice: with -DKGQA_BOUNDS_CHECKS=1 (as the
// package) and 0 (no id checks), each in its own namespace (-DKGQA_CPU_NS=...), for AVX2 as the
// package's cpu_avx2 copy is (csrc/cpu/avx2.cpp).
#include <torch/extension.h>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <tuple>
#include <vector>

#include "bounds.h"
#include "checks.h"
#include "huge_pages.h"
#include "kb_layout.h"
#include "tnorm.h"

#pragma GCC push_options
#pragma GCC target("avx2")
#include "cpu/follow_intersect_kernels.h"
#include "cpu/follow_kernels.h"

namespace kgqa {
namespace KGQA_CPU_NS {

at::Tensor pull(const at::Tensor& x, const at::Tensor& r, std::vector<at::Tensor> kb, bool inverse) {
  at::Tensor y = empty_large({x.size(0), x.size(1)}, x.options());
  BoundsFlag flag;
  pull_into(x, r, pull_index(kb, inverse), y, flag);
  flag.check("pull");
  return y;
}

at::Tensor dr(const at::Tensor& a, const at::Tensor& b, std::vector<at::Tensor> kb) {
  at::Tensor out = at::empty({kb_num_relations(kb), a.size(1)}, a.options());
  BoundsFlag flag;
  dr_into(a, b, kb, out, flag);
  flag.check("dr");
  return out;
}

at::Tensor intersect2(std::vector<at::Tensor> xs, std::vector<at::Tensor> rs, std::vector<at::Tensor> kb) {
  return std::get<0>(follow_intersect_cpu(xs, rs, kb, false, "min", false));
}

}  // namespace KGQA_CPU_NS
}  // namespace kgqa
#pragma GCC pop_options

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("pull", &kgqa::KGQA_CPU_NS::pull);
  m.def("dr", &kgqa::KGQA_CPU_NS::dr);
  m.def("intersect2", &kgqa::KGQA_CPU_NS::intersect2);
}
