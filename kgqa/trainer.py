"""Training: ``train`` fits a QA's model (and a scratch or fine-tuned encoder) to question/answer
pairs: AdamW with a warm-up and cosine decay, early stopping on validation Hits@1, data-parallel
under torchrun (``kgqa.parallel``). The QA itself is ``kgqa.qa``, its checkpoints
``kgqa.checkpoint``, TrainConfig ``kgqa.config``; their names are re-exported here, where they used
to live."""
from __future__ import annotations

import math
import random
import time
from typing import List

import torch
from tqdm.auto import tqdm

from . import parallel
from .batching import batches, split
from .config import TrainConfig
from .encoder import SCRATCH, build_encoder
from .kb import KnowledgeBase
from .loss import training_loss
from .metrics import indicator
from .model import RigelModel
from .qa import QA
from .questions import Question
from .relation_head import NAMES, check_kind
from .relation_names import relation_phrases

__all__ = ["train", "batch_loss", "precompute", "optimiser", "POSTFIX_EVERY", "QA", "TrainConfig", "batches", "split"]


def batch_loss(qa: QA, batch: List[Question]):
    """(the mean training loss of a batch, the Output, the answers and the excluded entities as
    [B, E] masks)."""
    out = qa.forward(batch)
    answers = indicator([q.answers for q in batch], out.scores.shape[1], out.scores.device, out.scores.dtype)
    exclude = qa.excluded(batch, out)
    return training_loss(out, answers, exclude), out, answers, exclude


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


def optimiser(qa: QA, train_qs: List[Question]):
    """(AdamW, its schedule: a linear warm-up over ``cfg.warmup`` of the optimiser steps, then
    cosine decay, the trainable parameters). A scratch encoder learns at the heads' rate; a
    pretrained one, fine-tuned, at ``cfg.encoder_lr``."""
    cfg, model, encoder = qa.cfg, qa.model, qa.encoder
    pretrained = [] if encoder.frozen or cfg.encoder == SCRATCH else list(encoder.parameters())
    heads = list(model.parameters()) + ([] if encoder.frozen or pretrained else list(encoder.parameters()))
    groups = [{"params": heads}] + ([{"params": pretrained, "lr": cfg.encoder_lr}] if pretrained else [])
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    grouped = cfg.intersection and not qa.learned
    steps_per_epoch = len(batches(train_qs, cfg.batch_size, grouped, shuffle=False))
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = max(1, int(cfg.warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    return opt, sched, heads + pretrained


POSTFIX_EVERY = 20  # optimiser steps between progress-bar postfixes: each reads the running sums from the device


def train(kb: KnowledgeBase, train_qs: List[Question], valid_qs: List[Question], cfg: TrainConfig,
          progress: bool = True, log=print, device=None) -> QA:
    """``device``: where the model trains (a torch.device or a name, "cpu", "cuda:0"; the CLI's
    ``--device`` resolves "auto" and torchrun's LOCAL_RANK first); by default this rank's device
    in a process group (its GPU under nccl), else the CPU. The model is initialised on the CPU
    and then moved, so a seed gives the same initial weights on every device."""
    if not train_qs or not valid_qs:
        raise ValueError(f"train(): {len(train_qs)} training and {len(valid_qs)} validation questions: "
                         f"it needs at least one of each")
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    t0 = time.perf_counter()
    world = parallel.world()  # data-parallel in an initialised process group: see kgqa/parallel.py
    device = world.device if device is None else torch.device(device)
    if world.distributed and world.device.type == "cuda" and device != world.device:
        raise ValueError(f"train(): device {device}, but this rank's process group (nccl) works on {world.device}")
    log = world.main_only(log)
    if cfg.entities == "learned" and cfg.finetune_encoder:
        raise ValueError("entities='learned' needs a frozen encoder (its token states are computed once): "
                         "drop finetune_encoder (--finetune-encoder)")
    # A scratch encoder's words: the questions', and the relation names' that a names head reads.
    names = relation_phrases(kb.relations) if check_kind(cfg.relation_head, "train()") == NAMES else []
    encoder = build_encoder(cfg.encoder, [q.masked for q in train_qs] + names, cfg.finetune_encoder)
    if cfg.entities == "learned" and not encoder.frozen:
        raise ValueError(f"entities='learned' needs a transformers encoder (frozen token states), not {cfg.encoder!r}")
    model = RigelModel(encoder.out_dim, kb.num_relations, cfg.hops, cfg.branches, cfg.hidden, cfg.entities,
                       cfg.relation_head)
    qa = QA(kb, encoder, model, cfg, device)
    precompute(qa, train_qs + valid_qs, log)
    opt, sched, params = optimiser(qa, train_qs)
    loss_of = world.wrap(qa, batch_loss)  # batch_loss, through DistributedDataParallel with several ranks
    grouped = cfg.intersection and not qa.learned  # gold branches need equal topic counts per batch
    best, best_state, stale = -1.0, None, 0
    for epoch in range(1, cfg.epochs + 1):
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
                top = out.scores.masked_fill(exclude, float("-inf")).argmax(1)
                correct += answers[torch.arange(n, device=device), top[:n]].sum()
                loss_sum += loss.detach().double() * n
            seen += n
            if not bar.disable and i % POSTFIX_EVERY == 0:
                bar.set_postfix(loss=f"{float(loss_sum) / max(1, seen):.4f}",
                                acc=f"{float(correct) / max(1, seen):.3f}")
        valid = qa.evaluate(valid_qs)
        loss_sum, correct, seen = world.all_sum(float(loss_sum), float(correct), seen)
        hits, minutes = world.from_main(valid["hits@1"], (time.perf_counter() - t0) / 60)  # one decision for all ranks
        row = {"epoch": epoch, "loss": loss_sum / max(1, seen), "train_hits@1": correct / max(1, seen),
               "valid_hits@1": hits, "minutes": minutes}
        cfg.history.append(row)
        log(f"epoch {epoch}: loss {row['loss']:.4f}  train Hits@1 {row['train_hits@1']:.4f}  "
            f"valid Hits@1 {row['valid_hits@1']:.4f}  ({row['minutes']:.1f} min)")
        if hits > best:
            best, stale = hits, 0
            best_state = ({k: v.clone() for k, v in model.state_dict().items()},
                          None if encoder.frozen else {k: v.clone() for k, v in encoder.state_dict().items()})
        else:
            stale += 1
        if stale >= cfg.patience or best >= 1.0:
            log(f"early stop: valid Hits@1 {best:.4f}")
            break
        if cfg.max_minutes is not None and row["minutes"] >= cfg.max_minutes:
            log(f"time limit of {cfg.max_minutes} min reached")
            break
    model.load_state_dict(best_state[0])
    if best_state[1] is not None:
        encoder.load_state_dict(best_state[1])
    qa.train_minutes = (time.perf_counter() - t0) / 60
    return qa
