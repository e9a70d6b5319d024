// The CPU pull compiled two ways for experiments/pull_avx2.py: the package's pull_row (runtime batch
// tile), and the same row loop with the tile fixed at 64 columns (pull_fixed), so that the
// accumulators can live in registers. The script builds this file once for baseline x86-64 and once
// with -mavx2 -mfma. fp32, B = 64 only; no bounds reports.
#include <torch/extension.h>
#include "cpu/pull_row.h"
using namespace kgqa; using namespace kgqa::cpu;

template <typename index_t, int64_t BT>
inline void pull_fixed(float* __restrict__ acc, int64_t row, int64_t B, const PullPtrs<index_t>& ix,
                       const float* x, const float* r) {
  const int64_t begin = ix.ptr[row], end = ix.ptr[row + 1];
  const index_t* col = ix.col; const index_t* rel = ix.rel;
  for (int64_t j = 0; j < BT; ++j) acc[j] = 0;
  int64_t f = begin;
  while (f < end) {
    const index_t p = rel[f];
    int64_t run_end = f + 1;
    while (run_end < end && rel[run_end] == p) ++run_end;
    const float* __restrict__ rp = r + int64_t(p) * B;
    if (run_end == f + 1) {
      const float* __restrict__ xs = x + int64_t(col[f]) * B;
      for (int64_t j = 0; j < BT; ++j) acc[j] += rp[j] * xs[j];
    } else {
      float run[BT];
      for (int64_t j = 0; j < BT; ++j) run[j] = 0;
      for (int64_t g = f; g < run_end; ++g) {
        const float* __restrict__ xs = x + int64_t(col[g]) * B;
        for (int64_t j = 0; j < BT; ++j) run[j] += xs[j];
      }
      for (int64_t j = 0; j < BT; ++j) acc[j] += rp[j] * run[j];
    }
    f = run_end;
  }
}

template <int mode>
torch::Tensor pull_m(torch::Tensor x, torch::Tensor r, at::TensorList kb, bool inverse) {
  const int64_t E = kb_num_entities(kb), B = x.size(1);
  TORCH_CHECK(B == 64);
  at::Tensor y = at::empty({E, B}, x.options());
  const PullIndex idx = pull_index(kb, inverse);
  AT_DISPATCH_INDEX_TYPES(idx.col.scalar_type(), "p", [&] {
    const PullPtrs<index_t> ix = pull_ptrs<index_t>(idx);
    const float* xp = x.data_ptr<float>(); const float* rp = r.data_ptr<float>(); float* yp = y.data_ptr<float>();
    parallel_over_segments(ix.ptr, E, [&](int64_t row0, int64_t row1) {
      alignas(64) float acc[128];
      for (int64_t row = row0; row < row1; ++row) {
        if (check_row(ix, row)) return;
        if (mode == 0) pull_row<float, index_t>(acc, row, 0, B, B, ix, xp, rp);
        else pull_fixed<index_t, 64>(acc, row, B, ix, xp, rp);
        float* out = yp + row * B;
        for (int64_t j = 0; j < 64; ++j) out[j] = acc[j];
      }
    });
  });
  return y;
}
torch::Tensor pull(torch::Tensor x, torch::Tensor r, std::vector<torch::Tensor> kbv, bool inverse, int64_t mode) {
  if (mode == 0) return pull_m<0>(x, r, kbv, inverse);
  return pull_m<1>(x, r, kbv, inverse);
}
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("pull", &pull); }
