// The CPU pull (csrc/cpu/pull_row.h: pull_row) and dr's chunk sum (sum_chunk) instantiated at
// several prefetch distances, for experiments/prefetch_distance.py. The loops around them are
// follow_cpu's and follow_backward_r_cpu's (csrc/cpu/follow.cpp), fp32 only, without bounds reports.
#include <torch/extension.h>

#include "cpu/pull_row.h"

using namespace kgqa;
using namespace kgqa::cpu;

template <int64_t ahead>
at::Tensor pull_at(const at::Tensor& x, const at::Tensor& r, at::TensorList kb, bool inverse) {
  const int64_t E = kb_num_entities(kb), B = x.size(1);
  at::Tensor y = at::empty({E, B}, x.options());
  const PullIndex idx = pull_index(kb, inverse);
  AT_DISPATCH_INDEX_TYPES(idx.col.scalar_type(), "pull_at", [&] {
    const PullPtrs<index_t> ix = pull_ptrs<index_t>(idx);
    const float* xp = x.data_ptr<float>();
    const float* rp = r.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    parallel_over_segments(ix.ptr, E, [&](int64_t row0, int64_t row1) {
      float acc[kBatchTile];
      for (int64_t row = row0; row < row1; ++row) {
        for (int64_t b0 = 0; b0 < B; b0 += kBatchTile) {
          const int64_t bt = std::min(kBatchTile, B - b0);
          pull_row<float, index_t, ahead>(acc, row, b0, bt, B, ix, xp, rp);
          for (int64_t j = 0; j < bt; ++j) yp[row * B + b0 + j] = acc[j];
        }
      }
    });
  });
  return y;
}

template <int64_t ahead>
at::Tensor dr_at(const at::Tensor& a, const at::Tensor& b, at::TensorList kb) {
  const int64_t E = kb_num_entities(kb), R = kb_num_relations(kb), B = a.size(1);
  const RelChunks rc = rel_chunks(kb);
  at::Tensor dr = at::empty({R, B}, a.options());
  AT_DISPATCH_INDEX_TYPES(kb[REL_SUBJ].scalar_type(), "dr_at", [&] {
    const index_t* subj = kb[REL_SUBJ].data_ptr<index_t>();
    const index_t* obj = kb[REL_OBJ].data_ptr<index_t>();
    const float* w = kb[REL_WEIGHT].numel() > 0 ? kb[REL_WEIGHT].data_ptr<float>() : nullptr;
    std::vector<float> partial(rc.chunks * B);
    parallel_dynamic(rc.chunks, [&](int64_t c) {
      int64_t begin, end;
      TORCH_CHECK(rc.chunk_facts(c, begin, end) == 0, "bad chunk table");
      for (int64_t b0 = 0; b0 < B; b0 += kBatchTile) {
        const ChunkFacts<index_t> cf{subj, obj, w, begin, end, E};
        sum_chunk<float, index_t, ahead>(partial.data() + c * B + b0, cf, a.data_ptr<float>(), b.data_ptr<float>(), b0,
                                         std::min(kBatchTile, B - b0), B);
      }
    });
    float* out = dr.data_ptr<float>();
    for (int64_t p = 0; p < R; ++p) {
      for (int64_t j = 0; j < B; ++j) {
        float sum = 0;
        for (int64_t c = rc.chunk_ptr[p]; c < rc.chunk_ptr[p + 1]; ++c) sum += partial[c * B + j];
        out[p * B + j] = sum;
      }
    }
  });
  return dr;
}

#define KGQA_DISTANCES(X) X(0) X(4) X(8) X(16) X(32) X(64)

at::Tensor pull(const at::Tensor& x, const at::Tensor& r, std::vector<at::Tensor> kb, bool inverse, int64_t ahead) {
#define KGQA_CASE(d) if (ahead == d) return pull_at<d>(x, r, kb, inverse);
  KGQA_DISTANCES(KGQA_CASE)
#undef KGQA_CASE
  TORCH_CHECK(false, "ahead must be one of 0, 4, 8, 16, 32, 64");
}

at::Tensor dr(const at::Tensor& a, const at::Tensor& b, std::vector<at::Tensor> kb, int64_t ahead) {
#define KGQA_CASE(d) if (ahead == d) return dr_at<d>(a, b, kb);
  KGQA_DISTANCES(KGQA_CASE)
#undef KGQA_CASE
  TORCH_CHECK(false, "ahead must be one of 0, 4, 8, 16, 32, 64");
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("pull", &pull);
  m.def("dr", &dr);
}
