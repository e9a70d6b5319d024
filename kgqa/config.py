"""TrainConfig: how a model is built and trained, and how it answers (entities, intersection,
topic exclusion). A checkpoint's config.json holds it under "train" (``kgqa.checkpoint``).

Each field also says what a checkpoint may hold for it (``kgqa.checkpoint_schema`` derives the
schema of "train" from this class): its type from the annotation, and in the field's metadata
its bounds ("lo", "hi", inclusive), its "choices", and whether a checkpoint must hold it
("required": the loaded model answers with it; a field that only steered training may be
missing, as in a checkpoint written before the field existed, and takes its default), and for a
field added after checkpoints were written without it, the value those checkpoints were built with
("legacy": a missing field takes it instead of the default)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from .encoder import DEFAULT_ENCODER
from .relation_head import IDS, NAMES, RELATION_HEADS

# Bounds shared with the schema of config.json's "model" (kgqa.checkpoint_schema), which repeats
# these sizes of RigelModel.
MAX_HOPS = 16  # each hop follows every fact of the KB once; MetaQA's deepest questions take 3
MAX_BRANCHES = 8  # one branch per topic entity (questions have 1 or 2); the GPU kernels join at most 8 a launch
MAX_HIDDEN = 65536  # the heads' width: 256x the default (256)
MAX_COUNT = 10**6  # epochs, patience: counts of passes over the data, beyond any run
INT64 = 2**63 - 1  # the largest id an int64 holds (entity ids, for KBs past int32)


def limits(default, lo=None, hi=None, *, choices=None, required=False, legacy=None):
    """A field with what a checkpoint may hold for it (see the module's docstring)."""
    meta = {"lo": lo, "hi": hi, "choices": choices, "required": required, "legacy": legacy}
    if isinstance(default, list):
        return field(default_factory=list, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    hops: int = limits(2, 1, MAX_HOPS, required=True)
    # A transformers model (name or path) or "scratch": a record here; the checkpoint's "encoder"
    # is what loads. 4096: the longest path Linux takes.
    encoder: str = limits(DEFAULT_ENCODER, 1, 4096, required=True)
    epochs: int = limits(20, 1, MAX_COUNT)
    batch_size: int = limits(64, 1, 2**20)  # a step's [batch, entities] scores; a million rows fit no device
    lr: float = limits(1e-3, 0.0)  # AdamW refuses a negative rate; any finite one is a rate
    finetune_encoder: bool = limits(False)  # a transformers encoder trains too (else frozen, encoded once)
    # its learning rate: pretrained weights want a far smaller update than the heads
    encoder_lr: float = limits(2e-5, 0.0)
    weight_decay: float = limits(0.01, 0.0)  # AdamW refuses a negative decay
    clip: float = limits(1.0, 0.0)  # a gradient norm: not negative
    warmup: float = limits(0.05, 0.0, 1.0)  # fraction of the optimiser steps with a linear warm-up; then cosine decay
    patience: int = limits(4, 0, MAX_COUNT)  # epochs without a better validation Hits@1 before stopping
    seed: int = limits(0, -(2**63), 2**64 - 1)  # the range torch.manual_seed takes
    intersection: bool = limits(True, required=True)
    exclude_topics: bool = limits(True, required=True)  # paths never return to a topic entity, which is never an answer
    hidden: int = limits(256, 1, MAX_HIDDEN, required=True)
    branches: int = limits(2, 1, MAX_BRANCHES, required=True)
    # "gold": the [brackets]; "learned": the entity resolver finds them
    entities: str = limits("gold", choices=("gold", "learned"), required=True)
    # How relations are scored (kgqa.relation_head): "names" reads their names, "ids" is a classifier
    # over relation ids, which every checkpoint written before this field had.
    relation_head: str = limits(NAMES, choices=RELATION_HEADS, legacy=IDS)
    max_minutes: Optional[float] = limits(None, 0.0)  # stop after the epoch that passes this
    history: List[dict] = limits([], 0, MAX_COUNT)  # a row per epoch: at most as many as epochs
