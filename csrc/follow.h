// Schemas of follow: one hop over the KB, and the gradients of its relation and fact weights.
#pragma once

#define KGQA_SCHEMAS_FOLLOW(m)                                                                           \
  /* y[o, b] = sum over facts (s, p, o) of w * x[s, b] * r[p, b]   (inverse: s and o swapped); y is   */ \
  /* contiguous, or with row_major the transpose of a contiguous [B, E] (a row-major x's gradient)   */ \
  m.def("follow(Tensor x, Tensor r, Tensor[] kb, bool inverse, bool row_major=False) -> Tensor");       \
  /* dr[p, b] = sum over facts (s, p, o) of w * x[s, b] * grad[o, b]   (inverse: s and o swapped) */     \
  m.def("follow_backward_r(Tensor x, Tensor grad, Tensor[] kb, bool inverse) -> Tensor");            \
  /* dw[f] = sum over b of x[s, b] * r[p, b] * grad[o, b] for fact f = (s, p, o), facts in the     */ \
  /* subject order of the KB (SUBJ_*: the canonical order)   (inverse: s and o swapped)          */ \
  m.def("follow_backward_w(Tensor x, Tensor r, Tensor grad, Tensor[] kb, bool inverse) -> Tensor");
