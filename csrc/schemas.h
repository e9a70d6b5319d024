// Every op's schema, once: registered as kgqa_kernels (csrc/kgqa.cpp) and, for the CPU
// emulation of the CUDA kernels, as kgqa_kernels_emu (csrc/emulation/cuda_host.cpp).
#pragma once

#define KGQA_DEFINE_SCHEMAS(m) \
  /* y[o, b] = sum over facts (s, p, o) of w * x[s, b] * r[p, b]   (inverse: s and o swapped) */ \
  m.def("follow(Tensor x, Tensor r, Tensor[] kb, bool inverse) -> Tensor"); \
  /* dr[p, b] = sum over facts (s, p, o) of w * x[s, b] * grad[o, b]   (inverse: s and o swapped) */ \
  m.def("follow_backward_r(Tensor x, Tensor grad, Tensor[] kb, bool inverse) -> Tensor"); \
  /* follow from a sparse frontier (first hops: a few entities per example), pushed along the facts */ \
  /* that leave it. Example b's frontier is ids[ptr[b]:ptr[b+1]] (sorted) with weights vals[...]; */ \
  /* the output is y of follow, [E, B], whose untouched pages the OS supplies as zeros. */ \
  m.def("follow_push(Tensor ptr, Tensor ids, Tensor vals, Tensor r, Tensor[] kb, bool inverse) -> Tensor"); \
  /* The frontier (ptr, ids, vals) of a row-major [B, E] x in one read, or empty tensors as soon as */ \
  /* more than max_nnz entries are nonzero (then the pull is the better direction). */ \
  m.def("dense_frontier(Tensor x, int max_nnz) -> (Tensor, Tensor, Tensor)"); \
  /* Gradients of follow_push for vals and r, touching only the facts that leave the frontier. */ \
  m.def( \
  "follow_push_backward(Tensor grad, Tensor ptr, Tensor ids, Tensor vals, Tensor r, Tensor[] kb, " \
  "bool inverse) -> (Tensor, Tensor)"); \
  /* Elementwise t-norms over k >= 2 tensors of one shape: min | product. */ \
  m.def("intersect(Tensor[] xs, str tnorm) -> Tensor"); \
  m.def("intersect_backward(Tensor grad, Tensor[] xs, Tensor out, str tnorm) -> Tensor[]"); \
  /* Elementwise t-conorms: max | product (1 - prod(1 - x)). */ \
  m.def("union(Tensor[] xs, str tnorm) -> Tensor"); \
  m.def("union_backward(Tensor grad, Tensor[] xs, Tensor out, str tnorm) -> Tensor[]"); \
  /* intersect(follow(xs[i], rs[i]) for i) without storing the k follow outputs. With save_ties */ \
  /* (tnorm "min", k <= 8) it also returns a uint8 [E, B] mask of the branches equal to the minimum, */ \
  /* all that the backward needs; else the second output is empty. */ \
  m.def( \
  "follow_intersect(Tensor[] xs, Tensor[] rs, Tensor[] kb, bool inverse, str tnorm, bool save_ties) " \
  "-> (Tensor, Tensor)"); \
  /* From follow_intersect's tie mask straight to the gradients of the xs (or of the rs): with */ \
  /* g_i = grad / (number of tied branches) where branch i is tied, else 0, */ \
  /* dxs[i] = follow(g_i, rs[i], kb, !inverse) and drs[i] = follow_backward_r(xs[i], g_i, kb, inverse), */ \
  /* without storing the k [E, B] g_i. */ \
  m.def( \
  "follow_intersect_backward_x(Tensor grad, Tensor ties, Tensor[] xs, Tensor[] rs, Tensor[] kb, " \
  "bool inverse) -> Tensor[]"); \
  m.def( \
  "follow_intersect_backward_r(Tensor grad, Tensor ties, Tensor[] xs, Tensor[] rs, Tensor[] kb, " \
  "bool inverse) -> Tensor[]"); \
  /* Without a tie mask: recomputes the k follow outputs row by row for the gradient of each. */ \
  m.def( \
  "follow_intersect_backward(Tensor grad, Tensor[] xs, Tensor[] rs, Tensor[] kb, bool inverse, " \
  "str tnorm) -> Tensor[]");
