// The kgqa_kernels library: every op's schema (csrc/schemas.h). Backends register implementations
// per dispatch key in csrc/cpu and csrc/cuda; autograd and fake (meta) kernels are registered from
// Python in kgqa_kernels/_registration.py.
//
// Layout convention of all follow-family ops: entity tensors are [num_entities, B] and relation
// tensors [num_relations, B], i.e. the batch is the innermost, contiguous dimension, so that one
// fact reads and writes whole contiguous rows (the public Python API exposes them as [B, E]
// transposed views, which costs nothing).
#include <Python.h>
#include <torch/library.h>

#include "schemas.h"

extern "C" {
// Importing kgqa_kernels._C runs the static registrations below; the module itself is empty.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(kgqa_kernels, m) { KGQA_DEFINE_SCHEMAS(m) }
