"""The training policy: how long ``kgqa.trainer.train`` trains and which epoch's weights it keeps,
decided from the size of the data so that small data need no tuning. `kgqa train` trains through
``train``, so the command line and the Python API follow the same policy; this module is its one
owner.

- Validation. Without a validation set, ``cfg.valid_fraction`` of the training questions is held
  out (drawn with ``cfg.seed``), unless it would be fewer than ``cfg.min_valid`` questions: then
  none is, and training uses every question. A fraction of 0 means no validation at all.
- A validation set of at least ``cfg.min_valid`` questions decides: training stops after
  ``patience`` epochs without a better validation Hits@1, and the kept weights are those of the
  LAST epoch with the best validation Hits@1 (a tie goes to the later epoch, which has had more of
  the decaying learning rate). A smaller one is only scored (each epoch, in the history): it
  neither stops training nor chooses the epoch.
- Without a deciding validation set, training runs the whole schedule and keeps the last epoch.
- The schedule. ``cfg.epochs`` None (the default) means DEFAULT_EPOCHS, raised so that training
  takes at least MIN_STEPS optimiser steps: 60 questions are one or two batches an epoch, and 20
  epochs would be 20 to 40 steps. ``cfg.patience`` None (the default) scales with the epochs.

The numbers below come from ``experiments/train_policy.py`` (its output is quoted in
docs/results.md, "Small KBs with defaults").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

from .batching import split

# The schedule when TrainConfig.epochs is None: at least DEFAULT_EPOCHS (the fixed default before
# this policy; MetaQA-sized data reach their numbers in docs/results.md within it) and at least
# MIN_STEPS optimiser steps. MIN_STEPS: `python experiments/train_policy.py steps`, the four
# small KBs of experiments/data/small-kbs trained on all their questions for 25 to 800 steps
# (3 seeds each): test Hits@1 rises up to 300 steps and is flat beyond (docs/results.md).
DEFAULT_EPOCHS = 20
MIN_STEPS = 600
# Patience when TrainConfig.patience is None: a quarter of the epochs, at least 4 (the old fixed
# default, which the 20-epoch schedule keeps). `python experiments/train_policy.py valid`: on
# demo subsets a fixed 4 stopped long schedules within their warm-up's first tenth.
MIN_PATIENCE = 4
PATIENCE_SHARE = 0.25
# Fewer validation questions than this are too few to decide on: `python experiments/train_policy.py
# valid` (docs/results.md) trained demo subsets with 10% held out and early stopping against all
# questions for the whole schedule.
MIN_VALID = 30
VALID_FRACTION = 0.1


@dataclass(frozen=True)
class Plan:
    """What ``train`` does with its data: ``epochs`` at most, ``patience`` epochs without a
    better validation Hits@1 before stopping (None: never stops early), ``decides``: whether
    validation chooses the kept epoch (else the last is kept); ``notes``: lines for the log, a
    warning among them when the data are too small to validate on."""

    epochs: int
    patience: Optional[int]
    decides: bool
    notes: Tuple[str, ...]


def hold_out(questions: list, cfg, name: str = "valid_fraction", instead: str = "a validation set"
             ) -> Tuple[list, list, Optional[str]]:
    """(training, validation questions, a warning or None) when no validation set is given:
    ``cfg.valid_fraction`` of ``questions`` held out with ``cfg.seed``, or none at all when the
    fraction is 0 or the share would be fewer than ``cfg.min_valid`` questions (the warning says
    so). A ValueError naming the fraction (as ``name``: the CLI's --valid-fraction) when it would
    leave nothing to train on, suggesting ``instead``."""
    n = len(questions)
    share = int(round(cfg.valid_fraction * n))
    if cfg.valid_fraction == 0:
        return list(questions), [], None
    if share < cfg.min_valid:
        return list(questions), [], (
            f"warning: {n} training questions: {name} {cfg.valid_fraction:g} would hold out {share}, fewer "
            f"than min_valid {cfg.min_valid}, too few to validate on; training on all {n} with no validation")
    train_qs, valid_qs = split(questions, cfg.valid_fraction, cfg.seed)
    if not train_qs:
        raise ValueError(f"{name} {cfg.valid_fraction:g} holds out every one of the {n} training questions: none "
                         f"is left to train on (pass {instead})")
    return train_qs, valid_qs, None


def plan(cfg, n_train: int, n_valid: int, steps_per_epoch: int) -> Plan:
    """The Plan for ``n_train`` training and ``n_valid`` validation questions in
    ``steps_per_epoch`` optimiser steps an epoch (see the module's docstring)."""
    if cfg.epochs is not None:
        epochs = cfg.epochs
        schedule = f"{epochs} epochs ({epochs * steps_per_epoch} optimiser steps)"
    else:
        epochs = max(DEFAULT_EPOCHS, math.ceil(MIN_STEPS / max(1, steps_per_epoch)))
        schedule = (f"{epochs} epochs ({epochs * steps_per_epoch} optimiser steps: at least {DEFAULT_EPOCHS} "
                    f"epochs and {MIN_STEPS} steps)")
    decides = n_valid >= cfg.min_valid
    notes: List[str] = []
    if decides:
        patience = cfg.patience if cfg.patience is not None else max(MIN_PATIENCE, math.ceil(PATIENCE_SHARE * epochs))
        notes.append(f"training on {n_train} questions for at most {schedule}; validation on {n_valid}: early stop "
                     f"after {patience} epochs without a better Hits@1, keeping the last of the best epochs")
    else:
        patience = None
        if n_valid:
            notes.append(f"warning: {n_valid} validation questions, fewer than min_valid {cfg.min_valid}: too few to "
                         f"validate on; they are scored each epoch but neither stop training nor choose the epoch")
        notes.append(f"training on {n_train} questions for {schedule}, keeping the last epoch")
    return Plan(epochs, patience, decides, tuple(notes))


class Keeper:
    """Which epoch ``train`` keeps and when it stops, epoch by epoch (see the module's docstring):
    ``see(epoch, hits)`` (hits: that epoch's validation Hits@1, None without validation) returns
    whether to keep this epoch's weights; ``stop`` says whether training should end."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.best: Optional[float] = None  # the best validation Hits@1 so far
        self.kept: Optional[int] = None  # the kept epoch
        self.stale = 0  # epochs since the best Hits@1 last rose
        self.stop = False

    def see(self, epoch: int, hits: Optional[float]) -> bool:
        if not self.plan.decides:
            self.kept = epoch
            return True
        if self.best is None or hits > self.best:
            self.best, self.stale = hits, 0
        else:
            self.stale += 1
        keep = hits >= self.best  # a tie keeps the later epoch; patience counts from the last rise
        if keep:
            self.kept = epoch
        # No later epoch can beat a perfect score.
        self.stop = self.stale >= self.plan.patience or self.best >= 1.0
        return keep
