"""Training: ``train`` fits a QA's model (and a scratch or fine-tuned encoder) to question/answer
pairs: AdamW with a warm-up and cosine decay, data-parallel under torchrun (``kgqa.parallel``).
How long it trains, what it validates on and which epoch it keeps is ``kgqa.policy``'s. The QA
itself is ``kgqa.qa``, its checkpoints ``kgqa.checkpoint``, TrainConfig ``kgqa.config``; their
names are re-exported here, where they used to live."""
from __future__ import annotations

import math
import os
import random
import time
from typing import List, Optional, Sequence, Union

import torch
from tqdm.auto import tqdm

from . import calibration, mention_noise, parallel, policy, retrieval_policy
from .batching import batches, split
from .config import FOLLOW_EACH, POLICY, TrainConfig
from .encoder import SCRATCH, build_encoder
from .kb import KnowledgeBase
from .loss import training_loss
from .metrics import indicator
from .model import RigelModel
from .numbers import numeric_relations
from .operations import COUNT, DEFAULT_MAX_COUNT, MAX_COUNT_ANSWER, OPERATIONS, chosen_scores
from .qa import QA, max_topics
from .questions import Question, read_questions
from .relation_head import NAMES, check_kind
from .relation_names import relation_phrases

__all__ = ["train", "batch_loss", "precompute", "optimiser", "POSTFIX_EVERY", "QA", "TrainConfig", "batches", "split"]

Questions = Union[Sequence[Question], str, os.PathLike]


def batch_loss(qa: QA, batch: List[Question]):
    """(the mean training loss of a batch, the Output, the answers and the excluded entities as
    [B, E] masks)."""
    out = qa.forward(batch)
    answers = indicator([q.answers for q in batch], out.scores.shape[1], out.scores.device, out.scores.dtype)
    exclude = qa.excluded(batch, out)
    counts = None if out.ops is None else count_targets(batch, out.scores.device)
    return training_loss(out, answers, exclude, counts), out, answers, exclude


def count_targets(batch: List[Question], device) -> torch.Tensor:
    """[B] each question's count answer, -1 where none (past MAX_COUNT_ANSWER: the model's counts
    stop below it, and a number that large would not fit the tensor)."""
    return torch.tensor([-1 if q.count is None else min(q.count, MAX_COUNT_ANSWER + 1) for q in batch], device=device)


def operations_of(cfg: TrainConfig, kb: KnowledgeBase, train_qs: Sequence[Question]):
    """(the numeric attributes by relation name, max_count) of a model with operations, or
    (None, None) for one without: ``cfg.operations`` "on", or "auto" and some training question
    has a count answer that names no entity (``kgqa.questions``). max_count: the largest such
    count answer, at least DEFAULT_MAX_COUNT, at most MAX_COUNT_ANSWER."""
    counts = [q.count for q in train_qs if q.count is not None and not q.answers]
    if cfg.operations == "off" or (cfg.operations == "auto" and not counts):
        return None, None
    return ([kb.relations[r] for r in numeric_relations(kb)],
            min(MAX_COUNT_ANSWER, max([DEFAULT_MAX_COUNT] + counts)))


def precompute(qa: QA, questions: List[Question], log) -> None:
    """What a frozen encoder gives once, computed before the first epoch: the resolver's inputs
    (learned entities) or the question vectors; nothing for an encoder that trains."""
    if qa.learned:
        t1 = time.perf_counter()
        links = qa.link_inputs(questions)
        spans = sum(len(x.mentions) for x in links)
        log(f"entity resolution: {spans / max(1, len(links)):.2f} candidate spans per question; encoded "
            f"{len(qa.links)} questions and their span-masked forms in {time.perf_counter() - t1:.1f} s")
    elif qa.encoder.frozen:
        t1 = time.perf_counter()
        qa.encode(questions)
        log(f"encoded {len(qa.encodings)} distinct questions with {qa.cfg.encoder} in {time.perf_counter() - t1:.1f} s")


def steps_per_epoch(qa: QA, train_qs: List[Question]) -> int:
    """The optimiser steps of an epoch over ``train_qs``: its (global) batches."""
    return len(batches(train_qs, qa.cfg.batch_size, qa.cfg.intersection and not qa.learned, shuffle=False))


# The learned resolver's match scorer (kgqa.resolver) is one linear layer over a few features in
# [0, 1]: Adam moves a weight about the rate a step, so at the heads' rate 1,700 steps of cosine
# decay left the weight of a candidate's name similarity at 0.58 (a noisy-mention 1-hop model,
# docs/results.md "Training on noisy copies"), and a candidate with similarity 0.31 was linked over
# one with 0.95 by what the rest of the question asks. It learns at this multiple of the rate.
MATCH_SCORER_LR_SCALE = 10


def optimiser(qa: QA, train_qs: List[Question], epochs: Optional[int] = None):
    """(AdamW, its schedule: a linear warm-up over ``cfg.warmup`` of the optimiser steps of
    ``epochs`` epochs (default ``cfg.epochs``), then cosine decay, the trainable parameters). A
    scratch encoder learns at the heads' rate; a pretrained one, fine-tuned, at ``cfg.encoder_lr``;
    the learned resolver's match scorer at MATCH_SCORER_LR_SCALE times the heads' rate."""
    cfg, model, encoder = qa.cfg, qa.model, qa.encoder
    pretrained = [] if encoder.frozen or cfg.encoder == SCRATCH else list(encoder.parameters())
    matching = list(model.resolver.match_scorer.parameters()) if model.resolver is not None else []
    heads = [p for p in model.parameters() if all(p is not m for m in matching)]
    heads += [] if encoder.frozen or pretrained else list(encoder.parameters())
    groups = [{"params": heads}] + ([{"params": pretrained, "lr": cfg.encoder_lr}] if pretrained else [])
    if matching:
        groups.append({"params": matching, "lr": cfg.lr * MATCH_SCORER_LR_SCALE})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    epochs = cfg.epochs if epochs is None else epochs
    if epochs is None:
        raise ValueError("optimiser(): cfg.epochs is None (decided by kgqa.policy.plan): pass epochs")
    total = max(1, epochs * steps_per_epoch(qa, train_qs))
    warm = max(1, int(cfg.warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    return opt, sched, heads + matching + pretrained


POSTFIX_EVERY = 20  # optimiser steps between progress-bar postfixes: each reads the running sums from the device


def _questions(qs: Questions, kb: KnowledgeBase, cfg: TrainConfig, what: str) -> List[Question]:
    """``qs``, or the usable questions of the file ``qs`` names (ValueError when none is)."""
    if not isinstance(qs, (str, os.PathLike)):
        return list(qs)
    out, report = read_questions(qs, kb, require_topics=cfg.entities == "gold", max_topics=max_topics(cfg))
    if not out:
        raise ValueError(f"train(): {what} {qs}: no question can be used ({report.summary()})")
    return out


def restricts_hops(cfg: TrainConfig, attributes) -> bool:
    """Whether the model restricts each hop to the relations its set has facts of:
    ``cfg.restrict_hops`` "on" or "off", or "auto": when it has operations (``attributes`` not
    None)."""
    if cfg.restrict_hops == "auto":
        return attributes is not None
    return cfg.restrict_hops == "on"


def follows_each(cfg: TrainConfig) -> int:
    """RigelModel.follow_each for a new model: FOLLOW_EACH pairs for learned entities over two hops
    or more, where an unlikely candidate's converging paths can outrank the likely one's; else 0.
    At one hop the soft seed's path already is the mixture of each candidate's, and following each
    alone measured 86.2 against 86.6 noisy, 99.0 against 99.2 clean (docs/results.md "Each candidate
    followed alone"; ``kgqa eval --follow-each`` sets it on any learned model)."""
    return FOLLOW_EACH if cfg.entities == "learned" and cfg.hops > 1 else 0


def train(kb: Union[KnowledgeBase, str, os.PathLike], train_qs: Questions, valid_qs: Optional[Questions] = None,
          cfg: Optional[TrainConfig] = None, progress: bool = True, log=print, device=None) -> QA:
    """A QA trained on ``train_qs`` (Questions, or a question file) over ``kb`` (a KnowledgeBase,
    or a KB file), with ``cfg`` (default: TrainConfig()). ``valid_qs``: the validation questions
    (or their file); None holds out ``cfg.valid_fraction`` of ``train_qs`` by ``kgqa.policy``
    (none when that is 0 or too few to validate on), an empty list means no validation. How long
    it trains and which epoch it keeps is ``kgqa.policy.plan``'s; the returned QA's
    ``best_epoch`` is the kept epoch, whose row in ``cfg.history`` has "kept": true.

    ``device``: where the model trains (a torch.device or a name, "cpu", "cuda:0"; the CLI's
    ``--device`` resolves "auto" and torchrun's LOCAL_RANK first); by default this rank's device
    in a process group (its GPU under nccl), else the CPU. The model is initialised on the CPU
    and then moved, so a seed gives the same initial weights on every device."""
    cfg = TrainConfig() if cfg is None else cfg
    if not isinstance(kb, KnowledgeBase):
        kb = KnowledgeBase.load(kb)
    train_qs = _questions(train_qs, kb, cfg, "train_qs")
    held_out = None
    if valid_qs is None:
        train_qs, valid_qs, held_out = policy.hold_out(train_qs, cfg)
    else:
        valid_qs = _questions(valid_qs, kb, cfg, "valid_qs")
    if not train_qs:
        raise ValueError("train(): no training questions")
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    t0 = time.perf_counter()
    world = parallel.world()  # data-parallel in an initialised process group: see kgqa/parallel.py
    device = world.device if device is None else torch.device(device)
    if world.distributed and world.device.type == "cuda" and device != world.device:
        raise ValueError(f"train(): device {device}, but this rank's process group (nccl) works on {world.device}")
    log = world.main_only(log)
    if held_out:
        log(held_out)
    if cfg.entities == "learned" and cfg.finetune_encoder:
        raise ValueError("entities='learned' needs a frozen encoder (its token states are computed once): "
                         "drop finetune_encoder (--finetune-encoder)")
    if cfg.mention_noise:
        if cfg.entities != "learned":
            raise ValueError("mention_noise (--mention-noise) needs entities='learned': gold entities are the "
                             "[brackets], however they are written")
        kinds = mention_noise.check_kinds(cfg.mention_noise_kinds or mention_noise.KINDS,
                                          "mention_noise_kinds (--mention-noise-kinds)")
        copies = mention_noise.noisy_copies(train_qs, cfg.mention_noise, cfg.seed, kinds)
        # Validation, which chooses the kept epoch, gets its copies too: on the questions as written
        # alone it read 1.0 from the second epoch of MetaQA's 2-hop model, which stopped at the
        # seventh still learning the copies (training Hits@1 0.81 -> 0.92; noisy held-out Hits@1
        # 82.7, typos 74.8; with the copies in validation it trained to the sixteenth: 85.6 and
        # 86.8; docs/results.md "Training on noisy copies").
        valid_copies = mention_noise.noisy_copies(valid_qs, cfg.mention_noise, cfg.seed + 1, kinds)
        log(f"mention noise: {len(copies)} of {len(train_qs)} training questions and {len(valid_copies)} of "
            f"{len(valid_qs)} validation questions get a copy with their mention rewritten ({', '.join(kinds)})")
        train_qs, valid_qs = list(train_qs) + copies, list(valid_qs) + valid_copies
    # A scratch encoder's words: the questions', and the relation names' that a names head reads.
    names = relation_phrases(kb.relations) if check_kind(cfg.relation_head, "train()") == NAMES else []
    encoder = build_encoder(cfg.encoder, [q.masked for q in train_qs] + names, cfg.finetune_encoder)
    if cfg.entities == "learned" and not encoder.frozen:
        raise ValueError(f"entities='learned' needs a transformers encoder (frozen token states), not {cfg.encoder!r}")
    attributes, max_count = operations_of(cfg, kb, train_qs)
    if attributes is None:  # a model without operations answers no count question: never trained on one
        dropped = sum(not q.answers for q in train_qs)
        train_qs = [q for q in train_qs if q.answers]
        valid_qs = [q for q in valid_qs if q.answers]
        if dropped:
            log(f"operations off: {dropped} training questions whose answer is a count left out")
        if not train_qs:
            raise ValueError("train(): no training questions with an entity answer (count answers need operations)")
    else:
        log(f"operations: path, count (up to {max_count}), argmax and argmin over "
            f"{', '.join(attributes) if attributes else 'no numeric attribute (count only)'}")
    model = RigelModel(encoder.out_dim, kb.num_relations, cfg.hops, cfg.branches, cfg.hidden, cfg.entities,
                       cfg.relation_head, attributes, max_count, restrict_hops=restricts_hops(cfg, attributes),
                       topic_types=cfg.topic_types, follow_each=follows_each(cfg))
    qa = QA(kb, encoder, model, cfg, device)
    if qa.learned and cfg.retrieval == POLICY:  # the bandit learns where the candidates are first
        retrieval_policy.fit(qa, train_qs, log)
    precompute(qa, train_qs + valid_qs, log)
    steps = steps_per_epoch(qa, train_qs)
    plan = policy.plan(cfg, len(train_qs), len(valid_qs), steps)
    for note in plan.notes:
        log(note)
    opt, sched, params = optimiser(qa, train_qs, plan.epochs)
    loss_of = world.wrap(qa, batch_loss)  # batch_loss, through DistributedDataParallel with several ranks
    grouped = cfg.intersection and not qa.learned  # gold branches need equal topic counts per batch
    keeper = policy.Keeper(plan)
    kept_state, kept_row = None, None
    # A line per epoch, or about 25 lines for a long schedule (small data train hundreds of short
    # epochs); the history has every epoch.
    log_every = max(1, math.ceil(plan.epochs / 25)) if plan.epochs > 50 else 1
    for epoch in range(1, plan.epochs + 1):
        model.train()
        encoder.train(not encoder.frozen)
        bar = tqdm(batches(train_qs, cfg.batch_size, grouped, True, rng), desc=f"epoch {epoch}",
                   disable=not progress or not world.is_main, leave=False)
        seen = 0
        # Summed on the device (float64, as Python floats were), read once per epoch: reading them
        # at every optimiser step would wait for the GPU at every one.
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.float64, device=device)
        for i, batch in enumerate(bar):
            batch, n, scale = world.share(batch)  # this rank's part of the global batch; all of it in one process
            loss, out, answers, exclude = loss_of(batch)
            opt.zero_grad()
            (loss * scale).backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.clip)
            opt.step()
            sched.step()
            with torch.no_grad():
                scores = out.scores if out.ops is None else chosen_scores(out.ops, out.scores)
                top = scores.masked_fill(exclude, float("-inf")).argmax(1)
                hit = answers[torch.arange(n, device=device), top[:n]]
                if out.ops is not None:  # a count: its number against the count answer (-1: none)
                    is_count = out.ops.chosen[:n] == OPERATIONS.index(COUNT)
                    right = out.ops.number[:n] == count_targets(batch[:n], device)
                    hit = torch.where(is_count, right.to(hit.dtype), hit)
                correct += hit.sum()
                loss_sum += loss.detach().double() * n
            seen += n
            if not bar.disable and i % POSTFIX_EVERY == 0:
                bar.set_postfix(loss=f"{float(loss_sum) / max(1, seen):.4f}",
                                acc=f"{float(correct) / max(1, seen):.3f}")
        valid = qa.evaluate(valid_qs)["hits@1"] if valid_qs else float("nan")  # NaN: no validation
        loss_sum, correct, seen = world.all_sum(float(loss_sum), float(correct), seen)
        hits, minutes = world.from_main(valid, (time.perf_counter() - t0) / 60)  # one decision for all ranks
        row = {"epoch": epoch, "loss": loss_sum / max(1, seen), "train_hits@1": correct / max(1, seen),
               "valid_hits@1": hits if valid_qs else None, "minutes": minutes}
        cfg.history.append(row)
        if keeper.see(epoch, row["valid_hits@1"], row["train_hits@1"]):
            kept_row = row
            # Only when validation chooses can an earlier epoch's weights be the ones kept: without
            # it the last epoch is, and copying every epoch's state would be wasted.
            if plan.decides:
                kept_state = ({k: v.clone() for k, v in model.state_dict().items()},
                              None if encoder.frozen else {k: v.clone() for k, v in encoder.state_dict().items()})
        last = keeper.stop or epoch == plan.epochs or (cfg.max_minutes is not None and minutes >= cfg.max_minutes)
        if epoch % log_every == 0 or last:
            valid_text = f"valid Hits@1 {hits:.4f}  " if valid_qs else ""
            log(f"epoch {epoch}: loss {row['loss']:.4f}  train Hits@1 {row['train_hits@1']:.4f}  "
                f"{valid_text}({minutes:.1f} min)")
        if keeper.stop:
            log(f"early stop: {keeper.why}")
            break
        if cfg.max_minutes is not None and minutes >= cfg.max_minutes:
            log(f"time limit of {cfg.max_minutes} min reached")
            break
    if kept_state is not None:
        model.load_state_dict(kept_state[0])
        if kept_state[1] is not None:
            encoder.load_state_dict(kept_state[1])
    kept_row["kept"] = True
    qa.best_epoch = keeper.kept
    if qa.links.policy is not None:  # what linked the questions it answers joins the memory generator
        log(f"candidate policy: {retrieval_policy.remember_correct(qa, train_qs)} (span, entity) pairs of "
            f"correctly answered training questions remembered")
    # Thresholds from validation (kgqa.calibration); the training questions' words for its word check
    qa.calibration = calibration.fit(qa, valid_qs, train_qs if cfg.word_check else (), log=log)
    qa.train_minutes = (time.perf_counter() - t0) / 60
    why = (f"the last of the best on validation (Hits@1 {keeper.best:.4f} on {len(valid_qs)})" if plan.decides
           else "the last")
    log(f"kept epoch {keeper.kept} of {epoch}: {why}")
    return qa
