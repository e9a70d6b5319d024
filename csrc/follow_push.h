// Schemas of follow_push: follow from a sparse frontier (first hops: a few entities per example),
// pushed along the facts that leave it.
#pragma once

#define KGQA_SCHEMAS_FOLLOW_PUSH(m)                                                                      \
  /* Example b's frontier is ids[ptr[b]:ptr[b+1]] (sorted) with weights vals[...]; the output is y of */ \
  /* follow, [E, B], whose untouched pages the OS supplies as zeros. */                                  \
  m.def("follow_push(Tensor ptr, Tensor ids, Tensor vals, Tensor r, Tensor[] kb, bool inverse) -> Tensor"); \
  /* The frontier (ptr, ids, vals) of a row-major [B, E] x in one read, or empty tensors as soon as */   \
  /* more than max_nnz entries are nonzero (then the pull is the better direction). */                   \
  m.def("dense_frontier(Tensor x, int max_nnz) -> (Tensor, Tensor, Tensor)");                           \
  /* Gradients of follow_push for vals and r, touching only the facts that leave the frontier. */        \
  m.def(                                                                                                 \
      "follow_push_backward(Tensor grad, Tensor ptr, Tensor ids, Tensor vals, Tensor r, Tensor[] kb, "   \
      "bool inverse) -> (Tensor, Tensor)");
