"""TrainConfig: how a model is built and trained, and how it answers (entities, intersection,
topic exclusion). A checkpoint's config.json holds it under "train" (``kgqa.checkpoint``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from .encoder import DEFAULT_ENCODER


@dataclass
class TrainConfig:
    hops: int = 2
    encoder: str = DEFAULT_ENCODER
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    finetune_encoder: bool = False  # a transformers encoder trains too (else frozen, encoded once)
    encoder_lr: float = 2e-5  # its learning rate: pretrained weights want a far smaller update than the heads
    weight_decay: float = 0.01
    clip: float = 1.0
    warmup: float = 0.05  # fraction of the optimiser steps with a linear warm-up; then cosine decay
    patience: int = 4  # epochs without a better validation Hits@1 before stopping
    seed: int = 0
    intersection: bool = True
    exclude_topics: bool = True  # paths never return to a topic entity, which is never an answer
    hidden: int = 256
    branches: int = 2
    entities: str = "gold"  # "gold": the [brackets]; "learned": the entity resolver finds them
    max_minutes: Optional[float] = None  # stop after the epoch that passes this
    history: List[dict] = field(default_factory=list)
