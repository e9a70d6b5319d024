// The CUDA kernels as functors: operator()(thread, grid_stride) is the body of one thread. Plain
// host C++ as well, so tests run the real grids on the CPU (launch.h: HostLauncher).
//
// Traffic notes (B = batch, T = facts, E = entities, s = bytes of a value, H100 HBM 3.35 TB/s):
// the pull kernels read, per fact, two indices (shared by the lanes of a warp) and one x row of
// B values, coalesced across lanes, and write each output element once: T * (8 + B*s) + E*B*s
// bytes. Rows of x are gathered at random, so 256-byte rows (B = 64, fp32) should reach about
// 60% of HBM bandwidth (~2 TB/s); B <= 8 wastes most of each 32-byte sector.
#pragma once

#include <cstdint>

#include "../kb_layout.h"
#include "../tnorm.h"
#include "launch.h"

namespace kgqa {
namespace gpu {

// sum over facts f of row: w[f] * x[col[f], b] * r[rel[f], b]; runs of one relation are summed
// before multiplying by r once (facts within a row are sorted by relation), as the CPU kernel does.
template <typename scalar_t, typename acc_t, typename index_t>
KGQA_HD inline acc_t pull_one(const PullPtrs<index_t>& ix, int64_t row, int64_t b, int64_t B,
                              const scalar_t* x, const scalar_t* r) {
  acc_t acc = acc_t(0);
  const int64_t end = ix.ptr[row + 1];
  int64_t f = ix.ptr[row];
  while (f < end) {
    const index_t p = ix.rel[f];
    acc_t run = acc_t(0);
    for (; f < end && ix.rel[f] == p; ++f) {
      const acc_t xv = acc_t(x[int64_t(ix.col[f]) * B + b]);
      run += ix.weight ? acc_t(ix.weight[f]) * xv : xv;
    }
    acc += acc_t(r[int64_t(p) * B + b]) * run;
  }
  return acc;
}

// follow: y[row, b] for one (row, b) per thread; no atomics, each output written once.
template <typename scalar_t, typename acc_t, typename index_t>
struct FollowPullKernel {
  PullPtrs<index_t> ix;
  int64_t rows, B;
  const scalar_t* x;
  const scalar_t* r;
  scalar_t* y;
  KGQA_HD void operator()(const Thread& t, int64_t) const {
    const int64_t row = thread_row(t), b = thread_col(t);
    if (row >= rows || b >= B) return;
    y[row * B + b] = scalar_t(pull_one<scalar_t, acc_t, index_t>(ix, row, b, B, x, r));
  }
};

// dr, pass 1: chunk c (never crossing a relation) of the facts sorted (p, s, o) reduces into
// partial[c, b]. Traffic: T * (8 + 2*B*s) + chunks*B*4.
template <typename scalar_t, typename acc_t, typename index_t>
struct RelChunkKernel {
  const int64_t* relptr;
  const int64_t* chunk_ptr;
  const int64_t* chunk_rel;
  const index_t* subj;
  const index_t* obj;
  const float* weight;
  int64_t chunks, B, chunk_size;
  const scalar_t* a;  // read at subjects
  const scalar_t* bv;  // read at objects
  acc_t* partial;
  KGQA_HD void operator()(const Thread& t, int64_t) const {
    const int64_t c = thread_row(t), b = thread_col(t);
    if (c >= chunks || b >= B) return;
    const int64_t p = chunk_rel[c];
    const int64_t begin = relptr[p] + (c - chunk_ptr[p]) * chunk_size;
    const int64_t end = begin + chunk_size < relptr[p + 1] ? begin + chunk_size : relptr[p + 1];
    acc_t acc = acc_t(0);
    for (int64_t f = begin; f < end;) {
      const index_t s = subj[f];
      acc_t run = acc_t(0);
      for (; f < end && subj[f] == s; ++f) {
        const acc_t v = acc_t(bv[int64_t(obj[f]) * B + b]);
        run += weight ? acc_t(weight[f]) * v : v;
      }
      acc += acc_t(a[int64_t(s) * B + b]) * run;
    }
    partial[c * B + b] = acc;
  }
};

// dr, pass 2: dr[p, b] = sum of relation p's partials in chunk order (deterministic). Traffic:
// chunks*B*4 + R*B*s, small next to pass 1.
template <typename scalar_t, typename acc_t>
struct RelReduceKernel {
  const int64_t* chunk_ptr;
  const acc_t* partial;
  int64_t R, B;
  scalar_t* dr;
  KGQA_HD void operator()(const Thread& t, int64_t) const {
    const int64_t p = thread_row(t), b = thread_col(t);
    if (p >= R || b >= B) return;
    acc_t sum = acc_t(0);
    for (int64_t c = chunk_ptr[p]; c < chunk_ptr[p + 1]; ++c) sum += partial[c * B + b];
    dr[p * B + b] = scalar_t(sum);
  }
};

// Up to kMaxBranches tensors passed by value to a kernel.
constexpr int kMaxBranches = 16;
template <typename T>
struct Ptrs {
  T p[kMaxBranches];
};

// intersect / union forward, elementwise over n. Traffic (k+1)*n*s, streaming: should reach
// ~90% of HBM bandwidth (~3 TB/s on an H100).
template <typename scalar_t, typename acc_t>
struct CombineKernel {
  Ptrs<const scalar_t*> xs;
  int64_t k, n;
  TNorm tnorm;
  scalar_t* out;
  KGQA_HD void operator()(const Thread& t, int64_t stride) const {
    for (int64_t e = grid_first(t); e < n; e += stride) {
      const bool co = tnorm == TNorm::ProbSum;
      acc_t v = co ? acc_t(1) - acc_t(xs.p[0][e]) : acc_t(xs.p[0][e]);
      for (int64_t i = 1; i < k; ++i) {
        const acc_t xi = acc_t(xs.p[i][e]);
        switch (tnorm) {
          case TNorm::Min: v = nan_min(v, xi); break;
          case TNorm::Max: v = nan_max(v, xi); break;
          case TNorm::Product: v *= xi; break;
          case TNorm::ProbSum: v *= acc_t(1) - xi; break;
        }
      }
      out[e] = scalar_t(co ? acc_t(1) - v : v);
    }
  }
};

// intersect / union backward: min/max split the gradient evenly among ties (grad / count * mask,
// amin's formula); products take the product of the other inputs, without division. Traffic
// (2k+2)*n*s, streaming (~90% of HBM bandwidth).
template <typename scalar_t, typename acc_t>
struct CombineBackwardKernel {
  Ptrs<const scalar_t*> xs;
  Ptrs<scalar_t*> dxs;
  const scalar_t* grad;
  const scalar_t* out;
  int64_t k, n;
  TNorm tnorm;
  KGQA_HD void operator()(const Thread& t, int64_t stride) const {
    for (int64_t e = grid_first(t); e < n; e += stride) {
      const acc_t g = acc_t(grad[e]);
      if (tnorm == TNorm::Min || tnorm == TNorm::Max) {
        acc_t ties = acc_t(0);
        for (int64_t i = 0; i < k; ++i) ties += acc_t(xs.p[i][e] == out[e]);
        const acc_t share = g / ties;
        for (int64_t i = 0; i < k; ++i) dxs.p[i][e] = scalar_t(share * acc_t(xs.p[i][e] == out[e]));
      } else {
        const bool co = tnorm == TNorm::ProbSum;
        for (int64_t i = 0; i < k; ++i) {
          acc_t prod = g;
          for (int64_t m = 0; m < k; ++m) {
            if (m != i) prod *= co ? acc_t(1) - acc_t(xs.p[m][e]) : acc_t(xs.p[m][e]);
          }
          dxs.p[i][e] = scalar_t(prod);
        }
      }
    }
  }
};

// follow_intersect forward: k pulls per (row, b) in registers, combined, written once; with ties,
// also the uint8 mask of the branches equal to the minimum (compared in the output dtype).
// Traffic k*T*(8 + B*s) + E*B*(s+1): k pulls' gathers, one output (~60% of HBM, as the pull).
template <typename scalar_t, typename acc_t, typename index_t>
struct FollowIntersectKernel {
  PullPtrs<index_t> ix;
  Ptrs<const scalar_t*> xs, rs;
  int64_t k, rows, B;
  TNorm tnorm;
  scalar_t* out;
  uint8_t* ties;  // nullptr: not wanted
  KGQA_HD void operator()(const Thread& t, int64_t) const {
    const int64_t row = thread_row(t), b = thread_col(t);
    if (row >= rows || b >= B) return;
    acc_t ys[kMaxBranches] = {};  // k >= 2 entries are set below
    for (int64_t i = 0; i < k; ++i) ys[i] = pull_one<scalar_t, acc_t, index_t>(ix, row, b, B, xs.p[i], rs.p[i]);
    acc_t v = ys[0];
    for (int64_t i = 1; i < k; ++i) v = tnorm == TNorm::Min ? nan_min(v, ys[i]) : v * ys[i];
    const scalar_t o = scalar_t(v);
    out[row * B + b] = o;
    if (ties) {
      uint8_t m = 0;
      for (int64_t i = 0; i < k; ++i) m |= uint8_t(acc_t(scalar_t(ys[i])) == acc_t(o)) << i;
      ties[row * B + b] = m;
    }
  }
};

// follow_intersect backward without a tie mask: recompute the k pulls, then the gradient of each.
// Traffic k*T*(8 + B*s) + (k+1)*E*B*s.
template <typename scalar_t, typename acc_t, typename index_t>
struct FollowIntersectBackwardKernel {
  PullPtrs<index_t> ix;
  Ptrs<const scalar_t*> xs, rs;
  Ptrs<scalar_t*> gys;
  const scalar_t* grad;
  int64_t k, rows, B;
  TNorm tnorm;
  KGQA_HD void operator()(const Thread& t, int64_t) const {
    const int64_t row = thread_row(t), b = thread_col(t);
    if (row >= rows || b >= B) return;
    acc_t ys[kMaxBranches] = {};  // k >= 2 entries are set below
    for (int64_t i = 0; i < k; ++i) {
      ys[i] = acc_t(scalar_t(pull_one<scalar_t, acc_t, index_t>(ix, row, b, B, xs.p[i], rs.p[i])));
    }
    const int64_t e = row * B + b;
    const acc_t g = acc_t(grad[e]);
    if (tnorm == TNorm::Min) {
      acc_t v = ys[0];
      for (int64_t i = 1; i < k; ++i) v = nan_min(v, ys[i]);
      acc_t tied = acc_t(0);
      for (int64_t i = 0; i < k; ++i) tied += acc_t(ys[i] == v);
      const acc_t share = g / tied;
      for (int64_t i = 0; i < k; ++i) gys.p[i][e] = scalar_t(share * acc_t(ys[i] == v));
    } else {
      for (int64_t i = 0; i < k; ++i) {
        acc_t prod = g;
        for (int64_t m = 0; m < k; ++m) {
          if (m != i) prod *= ys[m];
        }
        gys.p[i][e] = scalar_t(prod);
      }
    }
  }
};

// follow_intersect backward from the tie mask, elementwise. Traffic n*(s + 1 + k*s), streaming.
template <typename scalar_t, typename acc_t>
struct TiesBackwardKernel {
  const scalar_t* grad;
  const uint8_t* ties;
  Ptrs<scalar_t*> gys;
  int64_t k, n;
  KGQA_HD void operator()(const Thread& t, int64_t stride) const {
    for (int64_t e = grid_first(t); e < n; e += stride) {
      int count = 0;
      for (int64_t i = 0; i < k; ++i) count += (ties[e] >> i) & 1;
      const acc_t share = acc_t(grad[e]) / acc_t(count);
      for (int64_t i = 0; i < k; ++i) gys.p[i][e] = scalar_t(share * acc_t((ties[e] >> i) & 1));
    }
  }
};

// follow_push: one thread per example pushes its frontier along the facts leaving it, adding into
// y_acc[o, b] (a float32-or-wider buffer of zeros). Only this thread writes column b, in frontier
// and fact order, so there are no atomics and the sums are deterministic. Traffic: the frontier's
// facts only, B times less parallelism than the pull: meant for sparse frontiers.
template <typename scalar_t, typename acc_t, typename index_t>
struct FollowPushKernel {
  PullPtrs<index_t> ix;  // facts grouped by the entity they leave
  const int64_t* fptr;
  const int64_t* ids;
  const scalar_t* vals;
  const scalar_t* r;
  int64_t B;
  acc_t* y;
  KGQA_HD void operator()(const Thread& t, int64_t stride) const {
    for (int64_t b = grid_first(t); b < B; b += stride) {
      for (int64_t k = fptr[b]; k < fptr[b + 1]; ++k) {
        const int64_t s = ids[k];
        const acc_t v = acc_t(vals[k]);
        for (int64_t f = ix.ptr[s]; f < ix.ptr[s + 1]; ++f) {
          const acc_t c = acc_t(r[int64_t(ix.rel[f]) * B + b]) * (ix.weight ? acc_t(ix.weight[f]) * v : v);
          y[int64_t(ix.col[f]) * B + b] += c;
        }
      }
    }
  }
};

// follow_push backward: d vals per frontier entry, and dr[:, b] (zeros on entry) owned by the
// thread of example b. Traffic: the frontier's facts, plus zeroing R*B accumulators.
template <typename scalar_t, typename acc_t, typename index_t>
struct FollowPushBackwardKernel {
  PullPtrs<index_t> ix;
  const int64_t* fptr;
  const int64_t* ids;
  const scalar_t* vals;
  const scalar_t* r;
  const scalar_t* grad;
  int64_t B;
  scalar_t* dvals;
  acc_t* dr;
  KGQA_HD void operator()(const Thread& t, int64_t stride) const {
    for (int64_t b = grid_first(t); b < B; b += stride) {
      for (int64_t k = fptr[b]; k < fptr[b + 1]; ++k) {
        const int64_t s = ids[k];
        const acc_t v = acc_t(vals[k]);
        acc_t dv = acc_t(0);
        for (int64_t f = ix.ptr[s]; f < ix.ptr[s + 1]; ++f) {
          const int64_t p = ix.rel[f];
          const acc_t g = acc_t(grad[int64_t(ix.col[f]) * B + b]);
          const acc_t wg = ix.weight ? acc_t(ix.weight[f]) * g : g;
          dv += acc_t(r[p * B + b]) * wg;
          dr[p * B + b] += v * wg;
        }
        dvals[k] = scalar_t(dv);
      }
    }
  }
};

}  // namespace gpu
}  // namespace kgqa
