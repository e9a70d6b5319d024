// Schemas of intersect and union: elementwise t-norms and t-conorms over k >= 2 tensors of one shape.
#pragma once

#define KGQA_SCHEMAS_INTERSECT(m)                                                                        \
  /* min | product */                                                                                    \
  m.def("intersect(Tensor[] xs, str tnorm) -> Tensor");                                                  \
  m.def("intersect_backward(Tensor grad, Tensor[] xs, Tensor out, str tnorm) -> Tensor[]");              \
  /* max | product (1 - prod(1 - x)) */                                                                  \
  m.def("union(Tensor[] xs, str tnorm) -> Tensor");                                                      \
  m.def("union_backward(Tensor grad, Tensor[] xs, Tensor out, str tnorm) -> Tensor[]");
