// Schemas of follow: one hop over the KB, and the gradient of its relation weights.
#pragma once

#define KGQA_SCHEMAS_FOLLOW(m)                                                                           \
  /* y[o, b] = sum over facts (s, p, o) of w * x[s, b] * r[p, b]   (inverse: s and o swapped) */         \
  m.def("follow(Tensor x, Tensor r, Tensor[] kb, bool inverse) -> Tensor");                             \
  /* dr[p, b] = sum over facts (s, p, o) of w * x[s, b] * grad[o, b]   (inverse: s and o swapped) */     \
  m.def("follow_backward_r(Tensor x, Tensor grad, Tensor[] kb, bool inverse) -> Tensor");
