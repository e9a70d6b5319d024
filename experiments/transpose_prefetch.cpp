// csrc/transpose.h's transpose_into with and without its prefetch, into a given or a fresh buffer,
// for experiments/transpose_prefetch.py.
#include <torch/extension.h>

#include "transpose.h"

at::Tensor run(const at::Tensor& src, bool prefetch, bool fresh, at::Tensor out) {
  if (fresh) out = at::empty({src.size(1), src.size(0)}, src.options());
  if (prefetch) kgqa::transpose_into<true>(src, out);
  else kgqa::transpose_into<false>(src, out);
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("run", &run); }
