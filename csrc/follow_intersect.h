// Schemas of follow_intersect: intersect(follow(xs[i], rs[i]) for i) without storing the k follow
// outputs, and its backwards.
#pragma once

#define KGQA_SCHEMAS_FOLLOW_INTERSECT(m)                                                                 \
  /* With save_ties (tnorm "min", k <= MAX_TIE_BRANCHES) it also returns a uint8 [E, B] mask of the */    \
  /* branches equal to the minimum, all that the backward needs; else the second output is empty. */     \
  m.def(                                                                                                 \
      "follow_intersect(Tensor[] xs, Tensor[] rs, Tensor[] kb, bool inverse, str tnorm, bool save_ties) " \
      "-> (Tensor, Tensor)");                                                                            \
  /* From the tie mask straight to the gradients of the xs (or of the rs): with */                       \
  /* g_i = grad / (number of tied branches) where branch i is tied, else 0, */                           \
  /* dxs[i] = follow(g_i, rs[i], kb, !inverse) and drs[i] = follow_backward_r(xs[i], g_i, kb, inverse), */ \
  /* without storing the k [E, B] g_i. */                                                                \
  m.def(                                                                                                 \
      "follow_intersect_backward_x(Tensor grad, Tensor ties, Tensor[] xs, Tensor[] rs, Tensor[] kb, "    \
      "bool inverse) -> Tensor[]");                                                                      \
  m.def(                                                                                                 \
      "follow_intersect_backward_r(Tensor grad, Tensor ties, Tensor[] xs, Tensor[] rs, Tensor[] kb, "    \
      "bool inverse) -> Tensor[]");                                                                      \
  /* Without a tie mask: recomputes the k follow outputs row by row for the gradient of each. */         \
  m.def(                                                                                                 \
      "follow_intersect_backward(Tensor grad, Tensor[] xs, Tensor[] rs, Tensor[] kb, bool inverse, "     \
      "str tnorm) -> Tensor[]");
