"""The KB tensor list and the constants shared with the C++ and Triton kernels, as the compiled
extension defines them: csrc/kb_layout.h is their one definition, and kgqa_kernels._C carries the
values (and their names, in order), so this module lists nothing itself.

``SLOT_NAMES``: the slots of ``SparseKB.tensors()`` in order; each is also a module attribute
(``OBJ_PTR``, ``SUBJ_OBJ``, ...). ``NUM_KB_SLOTS``; ``REL_CHUNK`` (facts per chunk of dr's fixed
reduction order); ``MAX_TIE_BRANCHES`` (branches a follow_intersect tie mask holds);
``GPU_MAX_BRANCHES`` (branches the CUDA kernels take by value).
"""
from __future__ import annotations

import torch  # noqa: F401  (libtorch must be loaded before the extension)

from . import _C

SLOT_NAMES = tuple(_C.KB_SLOT_NAMES)
CONSTANT_NAMES = tuple(_C.CONSTANT_NAMES)
NUM_KB_SLOTS = _C.NUM_KB_SLOTS
globals().update({name: getattr(_C, name) for name in SLOT_NAMES + CONSTANT_NAMES})


def pull_slots(inverse: bool):
    """(ptr, col, rel, weight) slots of the pull into objects, or into subjects when ``inverse``:
    the facts grouped by the entity a pull writes (for a push: by the entity it leaves)."""
    if inverse:
        return SUBJ_PTR, SUBJ_OBJ, SUBJ_REL, SUBJ_WEIGHT  # noqa: F821  (set from _C above)
    return OBJ_PTR, OBJ_SUBJ, OBJ_REL, OBJ_WEIGHT  # noqa: F821


def as_dict() -> dict:
    """Every slot and constant by name, in the order of the ``constants()`` op."""
    return {name: globals()[name] for name in SLOT_NAMES + ("NUM_KB_SLOTS",) + CONSTANT_NAMES}
