"""Training, prediction and checkpoints (safetensors + JSON config, never pickle)."""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from . import parallel
from .encoder import DEFAULT_ENCODER, SCRATCH, build_encoder, encoder_from_config
from .aliases import AliasIndex
from .kb import KnowledgeBase
from .linking import strip_brackets
from .metrics import aggregate, indicator, question_metrics
from .loss import training_loss
from .model import Output, RigelModel
from .questions import Question
from .resolver import EntityFacts, LinkInput, collate, linking_inputs


@dataclass
class TrainConfig:
    hops: int = 2
    encoder: str = DEFAULT_ENCODER
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    finetune_encoder: bool = False  # a transformers encoder trains too (else frozen, encoded once)
    encoder_lr: float = 2e-5  # its learning rate: pretrained weights want a far smaller step than the heads
    weight_decay: float = 0.01
    clip: float = 1.0
    warmup: float = 0.05  # fraction of the steps with a linear warm-up; then cosine decay
    patience: int = 4  # epochs without a better validation Hits@1 before stopping
    seed: int = 0
    intersection: bool = True
    exclude_topics: bool = True  # paths never return to a topic entity, which is never an answer
    hidden: int = 256
    branches: int = 2
    entities: str = "gold"  # "gold": the [brackets]; "learned": the entity resolver finds them
    max_minutes: Optional[float] = None  # stop after the epoch that passes this
    history: List[dict] = field(default_factory=list)


class QA:
    """A trained model with its encoder and KB: predicts answers with explanations. Everything it
    computes lives on ``device``: the model and the encoder are moved there, the hops run over a
    copy of the KB's SparseKB there, and the batches' tensors are built there."""

    def __init__(self, kb: KnowledgeBase, encoder, model: RigelModel, cfg: TrainConfig, device="cpu"):
        self.device = torch.device(device)
        self.kb, self.cfg = kb, cfg
        self.encoder, self.model = encoder.to(self.device), model.to(self.device)
        # A copy, not kb.to(): the caller's KB stays where it is (other models, the tests, use it).
        self.sparse = kb.sparse.to(self.device)
        self._cache: Dict[str, torch.Tensor] = {}
        self._links: Dict[str, LinkInput] = {}
        self._aliases: Optional[AliasIndex] = None
        self._facts: Optional[EntityFacts] = None

    @property
    def learned(self) -> bool:
        return self.cfg.entities == "learned"

    def link_inputs(self, questions: List[Question]) -> List[LinkInput]:
        if self._aliases is None:
            self._aliases = AliasIndex(self.kb.entities)
            self._facts = EntityFacts(self.kb, self.device)
        return linking_inputs([strip_brackets(q.text)[0] for q in questions], self._aliases, self.encoder, self._links,
                              self.device)

    # ---- question vectors: computed once per text for a frozen encoder ------------------------

    def encode(self, questions: List[Question]) -> torch.Tensor:
        texts = [q.masked for q in questions]
        if not self.encoder.frozen:
            return self.encoder(texts)
        todo = sorted({t for t in texts if t not in self._cache})
        if todo:  # cached on the device: a batch is then one stack there
            for t, v in zip(todo, self.encoder(todo).to(self.device)):
                self._cache[t] = v
        return torch.stack([self._cache[t] for t in texts])

    def _topics_mask(self, questions, E, out: Output):
        if out.exclude is not None:
            return out.exclude
        return indicator([q.topics if self.cfg.exclude_topics else [] for q in questions], E, out.scores.device)

    def forward(self, questions: List[Question]) -> Output:
        if self.learned:
            lb = collate(self.link_inputs(questions), self._facts)
            return self.model.forward_learned(lb, self._facts, self.sparse, self.cfg.intersection,
                                              self.cfg.exclude_topics)
        return self.model(self.encode(questions), [q.topics for q in questions], self.sparse, self.cfg.intersection,
                          self.cfg.exclude_topics)

    @torch.no_grad()
    def predict(self, questions: List[Question]):
        """(scores [B, E] with topic entities at -inf, Output), for questions in any mix of topic
        counts (the model runs one group of equal counts at a time)."""
        self.model.eval()
        self.encoder.eval()  # a fine-tuned transformer's dropout off (the trainer turns it on each epoch)
        if self.learned or not self.cfg.intersection:
            out = self.forward(questions)
        else:
            parts = []
            for c in sorted({len(q.topics) for q in questions}):
                idx = [i for i, q in enumerate(questions) if len(q.topics) == c]
                parts.append((idx, self.forward([questions[i] for i in idx])))
            out = parts[0][1]
            if len(parts) > 1:
                order = torch.tensor([i for idx, _ in parts for i in idx], device=self.device).argsort()
                out = Output(*(torch.cat([getattr(o, f) for _, o in parts])[order]
                               for f in ("scores", "relations", "hop_attention")))
        scores = out.scores.masked_fill(self._topics_mask(questions, self.kb.num_entities, out), float("-inf"))
        return scores, out

    def evaluate(self, questions: List[Question], batch_size: int = 256, k: int = 5) -> dict:
        if not questions:
            raise ValueError("evaluate(): no questions to score")
        rows, order, linked = [], [], []
        for batch in batches(questions, batch_size, self.cfg.intersection and not self.learned, shuffle=False):
            scores, out = self.predict(batch)
            rows += question_metrics(scores, [q.answers for q in batch], k)
            order += batch
            topics = out.topics
            if topics is not None:
                linked += [sorted(p) == sorted(q.topics) for p, q in zip(topics, batch) if q.topics]
        result = aggregate(rows, [q.qtype for q in order])
        if linked:  # the brackets serve only to score the linking
            result["linking_accuracy"] = sum(linked) / len(linked)
            result["linking_n"] = len(linked)
        return result

    # ---- checkpoints -----------------------------------------------------------------------------

    def save(self, out_dir, kb_path: Optional[str], extra: Optional[dict] = None) -> None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        state = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if not self.encoder.frozen:
            state.update({f"encoder.{k}": v for k, v in self.encoder.state_dict().items()})
        # From the CPU, whatever device trained it: the file loads anywhere (QA.load(device=...)).
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(out / "model.safetensors"))
        config = {"train": {k: v for k, v in asdict(self.cfg).items()}, "model": self.model.dims,
                  "encoder": self.encoder.config(), "kb": {"path": kb_path, "relations": self.kb.relations,
                                                          "num_entities": self.kb.num_entities}}
        config.update(extra or {})
        (out / "config.json").write_text(json.dumps(config, indent=1))

    @classmethod
    def load(cls, model_dir, kb: Optional[KnowledgeBase] = None, device="cpu") -> "QA":
        """The model of ``kgqa train --out model_dir`` on ``device`` (any: checkpoints hold CPU tensors)."""
        d = Path(model_dir)
        if not (d / "config.json").is_file():
            raise FileNotFoundError(f"{d}: no config.json (is this a directory written by `kgqa train`?)")
        config = json.loads((d / "config.json").read_text())
        if kb is None:
            path = config["kb"]["path"]
            if path is None or not Path(path).is_file():
                raise FileNotFoundError(f"{d}: the KB the model was trained on ({path}) is gone; pass --kb")
            kb = KnowledgeBase.load(path)
        if kb.relations != config["kb"]["relations"] or kb.num_entities != config["kb"]["num_entities"]:
            raise ValueError(f"{d}: the KB does not match the one the model was trained on (relations or entity count differ)")
        train = {k: v for k, v in config["train"].items() if k in TrainConfig.__dataclass_fields__}
        cfg = TrainConfig(**train)
        encoder = encoder_from_config(config["encoder"])
        model = RigelModel(**config["model"])
        state = load_file(str(d / "model.safetensors"), device="cpu")
        model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
        if not encoder.frozen:
            encoder.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("encoder.")})
        qa = cls(kb, encoder, model, cfg, device)
        qa.config = config
        return qa


def batches(questions: List[Question], size: int, group_by_topics: bool, shuffle: bool, rng=None):
    """Batches of questions with the same number of topic entities when intersecting (one branch each)."""
    groups: Dict[int, List[Question]] = {}
    for q in questions:
        groups.setdefault(len(q.topics) if group_by_topics else 0, []).append(q)
    out = []
    for key in sorted(groups):
        qs = list(groups[key])
        if shuffle:
            rng.shuffle(qs)
        out += [qs[i : i + size] for i in range(0, len(qs), size)]
    if shuffle:
        rng.shuffle(out)
    return out


def split(questions: List[Question], valid_fraction: float, seed: int):
    rng = random.Random(seed)
    qs = list(questions)
    rng.shuffle(qs)
    n = max(1, int(round(valid_fraction * len(qs))))
    return qs[n:], qs[:n]


def batch_loss(qa: QA, batch: List[Question]):
    """(the mean training loss of a batch, the Output, the answers and the excluded entities as
    [B, E] masks)."""
    out = qa.forward(batch)
    answers = indicator([q.answers for q in batch], out.scores.shape[1], out.scores.device, out.scores.dtype)
    exclude = qa._topics_mask(batch, qa.kb.num_entities, out)
    return training_loss(out, answers, exclude), out, answers, exclude


POSTFIX_EVERY = 20  # steps between progress-bar postfixes: each reads the running sums from the device


def train(kb: KnowledgeBase, train_qs: List[Question], valid_qs: List[Question], cfg: TrainConfig,
          progress: bool = True, log=print, device=None) -> QA:
    """``device``: where the model trains (a torch.device or a name, "cpu", "cuda:0"; the CLI's
    ``--device`` resolves "auto" and torchrun's LOCAL_RANK first); by default this rank's device
    in a process group (its GPU under nccl), else the CPU. The model is initialised on the CPU
    and then moved, so a seed gives the same initial weights on every device."""
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
    encoder = build_encoder(cfg.encoder, [q.masked for q in train_qs], cfg.finetune_encoder)
    if cfg.entities == "learned" and not encoder.frozen:
        raise ValueError(f"entities='learned' needs a transformers encoder (frozen token states), not {cfg.encoder!r}")
    model = RigelModel(encoder.out_dim, kb.num_relations, cfg.hops, cfg.branches, cfg.hidden, cfg.entities)
    qa = QA(kb, encoder, model, cfg, device)
    if qa.learned:
        t1 = time.perf_counter()
        links = qa.link_inputs(train_qs + valid_qs)
        spans = sum(len(x.mentions) for x in links)
        log(f"entity resolution: {spans / max(1, len(links)):.2f} candidate spans per question; encoded "
            f"{len(qa._links)} questions and their span-masked forms in {time.perf_counter() - t1:.1f} s")
    elif encoder.frozen:
        t1 = time.perf_counter()
        qa.encode(train_qs + valid_qs)
        log(f"encoded {len(qa._cache)} distinct questions with {cfg.encoder} in {time.perf_counter() - t1:.1f} s")
    # A scratch encoder learns at the heads' rate; a pretrained one at encoder_lr.
    pretrained = [] if encoder.frozen or cfg.encoder == SCRATCH else list(encoder.parameters())
    heads = list(model.parameters()) + ([] if encoder.frozen or pretrained else list(encoder.parameters()))
    params = heads + pretrained
    step = world.wrap(qa, batch_loss)  # batch_loss, through DistributedDataParallel with several ranks
    groups = [{"params": heads}] + ([{"params": pretrained, "lr": cfg.encoder_lr}] if pretrained else [])
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    grouped = cfg.intersection and not qa.learned  # gold branches need equal topic counts per batch
    steps_per_epoch = len(batches(train_qs, cfg.batch_size, grouped, shuffle=False))
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = max(1, int(cfg.warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    best, best_state, stale = -1.0, None, 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        encoder.train(not encoder.frozen)
        bar = tqdm(batches(train_qs, cfg.batch_size, grouped, True, rng), desc=f"epoch {epoch}",
                   disable=not progress or not world.is_main, leave=False)
        seen = 0
        # Summed on the device (float64, as Python floats were), read once per epoch: reading them
        # every step would wait for the GPU every step.
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.float64, device=device)
        for i, batch in enumerate(bar):
            batch, n, scale = world.share(batch)  # this rank's part of the global batch; all of it in one process
            loss, out, answers, exclude = step(batch)
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
