// The kgqa_kernels library: every op's schema (csrc/schemas.h), and the module kgqa_kernels._C,
// which carries the shared constants of csrc/kb_layout.h as attributes (kgqa_kernels/layout.py
// reads them). Backends register implementations per dispatch key in csrc/cpu and csrc/cuda;
// fake kernels and autograd are registered from Python, one file per op in kgqa_kernels/ops.
//
// Layout convention of all follow-family ops: entity tensors are [num_entities, B] and relation
// tensors [num_relations, B], i.e. the batch is the innermost, contiguous dimension, so that one
// fact reads and writes whole contiguous rows (the public Python API exposes them as [B, E]
// transposed views, which costs nothing).
#include <Python.h>
#include <torch/library.h>

#include <vector>

#include "bounds.h"
#include "cpu/isa.h"
#include "kb_layout.h"
#include "schemas.h"
#include "transpose.h"

namespace {

// The constants as the kernels see them, in the order of kgqa_kernels.layout.CONSTANT_NAMES (the
// KB slots, NUM_KB_SLOTS, then KGQA_CONSTANTS): the test of the Python view compares with these.
std::vector<int64_t> constants() {
  std::vector<int64_t> out;
#define KGQA_PUSH_SLOT(name) out.push_back(kgqa::name);
  KGQA_KB_SLOTS(KGQA_PUSH_SLOT)
#undef KGQA_PUSH_SLOT
  out.push_back(kgqa::NUM_KB_SLOTS);
#define KGQA_PUSH_CONSTANT(name, value) out.push_back(kgqa::name);
  KGQA_CONSTANTS(KGQA_PUSH_CONSTANT)
#undef KGQA_PUSH_CONSTANT
  return out;
}

// Appends a new str to a list, keeping no extra reference.
bool append_name(PyObject* list, const char* name) {
  PyObject* s = PyUnicode_FromString(name);
  if (s == nullptr) return false;
  const bool ok = PyList_Append(list, s) == 0;
  Py_DECREF(s);
  return ok;
}

// kgqa_kernels._C.bad_value_message(code): the error for a code of csrc/bounds.h, for the
// Triton kernels, which report the same codes.
PyObject* bad_value_message(PyObject*, PyObject* arg) {
  const long code = PyLong_AsLong(arg);
  if (code == -1 && PyErr_Occurred()) return nullptr;
  return PyUnicode_FromString(kgqa::bad_value_message(int32_t(code)).c_str());
}

// kgqa_kernels._C.cpu_isa(): "avx2" or "baseline", the copy of the CPU loops a call made now runs
// (csrc/cpu/isa.h; it reads KGQA_CPU_ISA).
PyObject* cpu_isa(PyObject*, PyObject*) { return PyUnicode_FromString(kgqa::cpu_isa_name(kgqa::cpu_isa())); }

PyMethodDef methods[] = {
    {"bad_value_message", bad_value_message, METH_O, "What an error code left by a kernel means."},
    {"cpu_isa", cpu_isa, METH_NOARGS, "The instruction set the CPU kernels run with now: avx2 or baseline."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

extern "C" {
// Importing kgqa_kernels._C runs the static registrations below; the module holds the constants.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};
  PyObject* m = PyModule_Create(&module_def);
  if (m == nullptr) return nullptr;
  bool ok = true;
#define KGQA_ADD_SLOT(name) ok = ok && PyModule_AddIntConstant(m, #name, long(kgqa::name)) == 0;
  KGQA_KB_SLOTS(KGQA_ADD_SLOT)
#undef KGQA_ADD_SLOT
  ok = ok && PyModule_AddIntConstant(m, "NUM_KB_SLOTS", long(kgqa::NUM_KB_SLOTS)) == 0;
#define KGQA_ADD_CONSTANT(name, value) ok = ok && PyModule_AddIntConstant(m, #name, long(kgqa::name)) == 0;
  KGQA_CONSTANTS(KGQA_ADD_CONSTANT)
#undef KGQA_ADD_CONSTANT
  // The names in order, so Python never lists them itself.
  PyObject* slots = PyList_New(0);
  PyObject* consts = PyList_New(0);
  ok = ok && slots && consts;
#define KGQA_LIST_SLOT(name) ok = ok && append_name(slots, #name);
  if (ok) { KGQA_KB_SLOTS(KGQA_LIST_SLOT) }
#undef KGQA_LIST_SLOT
#define KGQA_LIST_CONSTANT(name, value) ok = ok && append_name(consts, #name);
  if (ok) { KGQA_CONSTANTS(KGQA_LIST_CONSTANT) }
#undef KGQA_LIST_CONSTANT
  ok = ok && PyModule_AddObject(m, "KB_SLOT_NAMES", slots) == 0;
  ok = ok && PyModule_AddObject(m, "CONSTANT_NAMES", consts) == 0;
  if (!ok) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
}

TORCH_LIBRARY(kgqa_kernels, m) {
  KGQA_DEFINE_SCHEMAS(m)
  m.def("constants() -> int[]", &constants);
  // Not a backend's op: one implementation for every device (csrc/transpose.h), used by the
  // autograd of every backend for row-major gradients (kgqa_kernels/ops/transpose.py).
  m.def("transpose_copy(Tensor src) -> Tensor");
}

TORCH_LIBRARY_IMPL(kgqa_kernels, CompositeExplicitAutograd, m) { m.impl("transpose_copy", &kgqa::transpose_copy); }
