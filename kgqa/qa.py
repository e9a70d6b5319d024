"""QA: a model with its encoder and KB that answers questions (inference and evaluation). What it
computes once is kept in ``kgqa.caches``; checkpoints are written and read by ``kgqa.checkpoint``,
and ``kgqa.trainer.train`` makes one."""
from __future__ import annotations

import dataclasses
from functools import cached_property
from typing import Iterable, List, Optional

import torch

from . import answers
from .batching import batches
from .caches import EncodingCache, LinkCache
from .calibration import Calibration, confidence, words
from .config import TrainConfig
from .decoding import linked_mentions
from .evidence import FactIndex
from .kb import KnowledgeBase
from .link_batch import LinkInput, collate
from .linking import strip_brackets
from .metrics import aggregate, indicator, precision_at_coverage, question_metrics
from .model import Output, RigelModel
from .operations import COUNT, OPERATIONS, Attributes, OpOutput, chosen_scores
from .questions import Question
from .relation_head import RelationNameHead
from .relation_names import is_inverse, relation_phrases


def max_topics(cfg: TrainConfig) -> Optional[int]:
    """The most topic entities a question may have: one relation branch each when gold entities
    intersect (``cfg.branches``); any number otherwise (one branch seeded with all of them, or
    learned entities, where the brackets only score the linking)."""
    return cfg.branches if cfg.intersection and cfg.entities == "gold" else None


class QA:
    """A trained model with its encoder and KB: predicts answers with explanations. Everything it
    computes lives on ``device``: the model and the encoder are moved there, the hops run over a
    copy of the KB's SparseKB there, and the batches' tensors are built there."""

    def __init__(self, kb: KnowledgeBase, encoder, model: RigelModel, cfg: TrainConfig, device="cpu"):
        # TrainConfig's default head (names) is not RigelModel's (ids: a bare model has no KB to read
        # names from), so a hand-built QA can pair them; its checkpoint would not load.
        for key in ("relation_head", "topic_types"):
            if getattr(cfg, key) != model.dims[key]:
                raise ValueError(f"QA: cfg.{key} is {getattr(cfg, key)!r} but the model's {key} is "
                                 f"{model.dims[key]!r}; they must agree")
        self.device = torch.device(device)
        self.kb, self.cfg = kb, cfg
        self.encoder, self.model = encoder.to(self.device), model.to(self.device)
        # A copy, not kb.to(): the caller's KB stays where it is (other models, the tests, use it).
        self.sparse = kb.sparse.to(self.device)
        self.encodings = EncodingCache(self.encoder, self.device)  # frozen encoders only
        self.links = LinkCache(kb, self.encoder, self.device)  # learned entities only
        self.config: Optional[dict] = None  # config.json, when loaded from a checkpoint
        self.train_minutes: Optional[float] = None  # set by kgqa.trainer.train
        self.best_epoch: Optional[int] = None  # the epoch whose weights kgqa.trainer.train kept
        self.calibration = Calibration()  # the answer sets it stands behind (kgqa.calibration)
        self._entity_words: Optional[frozenset] = None  # learned entities' word check: the names' words
        self._relation_phrases: Optional[List[str]] = None  # a names head's input: read_relation_names
        self._inverse: Optional[torch.Tensor] = None
        self._attributes: Optional[Attributes] = None

    @property
    def operations(self) -> bool:
        """Whether the model counts and takes superlatives (``kgqa.operations``)."""
        return self.model.operation_head is not None

    @property
    def attributes(self) -> Optional[Attributes]:
        """The model's numeric attributes over this KB, their values computed once (None for a
        model without operations)."""
        if not self.operations:
            return None
        if self._attributes is None:
            self._attributes = Attributes.of(self.kb, self.model.dims["attributes"], self.sparse)
        return self._attributes

    def read_relation_names(self, texts: List[str]) -> Optional[torch.Tensor]:
        """The vectors of ``texts`` (``encode``'s; None for no texts), and for a names head
        (``kgqa.relation_head``) the encodings of the KB's relation names, handed to the head. A
        frozen encoder's are computed once (``encodings`` keeps them like question vectors); an
        encoder that trains encodes the names at every call, so that its gradients reach the
        encoder, in the same call as the texts (one GRU or transformer call per step, not two)."""
        head = self.model.relation_head
        if not isinstance(head, RelationNameHead):
            return self._vectors(texts) if texts else None
        if self._relation_phrases is None:  # the KB's relations do not change under a QA
            self._relation_phrases = relation_phrases(self.kb.relations)
            self._inverse = torch.tensor([is_inverse(r) for r in self.kb.relations], device=self.device)
        phrases = self._relation_phrases
        if self.encoder.frozen:
            head.read(self.encodings.encode(phrases), self._inverse)
            return self._vectors(texts) if texts else None
        vectors = self.encoder(list(texts) + phrases)
        head.read(vectors[len(texts):], self._inverse)
        return vectors[: len(texts)] if texts else None

    @property
    def learned(self) -> bool:
        return self.cfg.entities == "learned"

    @property
    def max_topics(self) -> Optional[int]:
        """``max_topics(self.cfg)``: more topic entities than this, and a question cannot be asked."""
        return max_topics(self.cfg)

    @cached_property
    def fact_index(self) -> FactIndex:
        """The facts into each entity, on the host (answers' evidence), built on first use."""
        return FactIndex(self.kb)

    def ask(self, question: str, top: int = 5, paths: int = 3) -> answers.Response:
        """The answers to one question in plain text, topic entities in [brackets] (or found by the
        model with learned entities): every answer the model stands behind (``self.calibration``),
        at most ``top``, each with up to ``paths`` evidence paths per topic entity. A ValueError
        says why a question cannot be read (``kgqa.answers``)."""
        return answers.ask(self, question, top, paths)

    # qa("...") is qa.ask("..."): what a user tries first (issue 19); a list is ask_many's
    def __call__(self, question: str, top: int = 5, paths: int = 3) -> answers.Response:
        """``ask``."""
        if isinstance(question, (list, tuple)):
            raise TypeError("QA(): one question (a string); for several, use ask_many()")
        return self.ask(question, top, paths)

    def ask_many(self, questions: Iterable[str], top: int = 5, paths: int = 3,
                 batch_size: int = answers.BATCH_SIZE) -> List[answers.Response]:
        """``ask`` for each question, the model run once per ``batch_size`` of them; a question that
        cannot be read gets a Response with ``error`` set instead of an exception."""
        return answers.ask_many(self, questions, top, paths, batch_size)

    def link_inputs(self, questions: List[Question]) -> List[LinkInput]:
        """The entity resolver's inputs for the questions, brackets stripped (computed once per text)."""
        return self.links.inputs([strip_brackets(q.text)[0] for q in questions])

    def encode(self, questions: List[Question]) -> torch.Tensor:
        """Question vectors: computed once per text for a frozen encoder, every call otherwise."""
        return self._vectors([q.masked for q in questions])

    def _vectors(self, texts: List[str]) -> torch.Tensor:
        return self.encodings.encode(texts) if self.encoder.frozen else self.encoder(texts)

    def excluded(self, questions: List[Question], out: Output) -> torch.Tensor:
        """[B, E] bool: the entities never answered, the topic entities (linked ones for learned
        entities; none without ``exclude_topics``)."""
        if out.exclude is not None:
            return out.exclude
        return indicator([q.topics if self.cfg.exclude_topics else [] for q in questions], self.kb.num_entities,
                         out.scores.device)

    def forward(self, questions: List[Question], trace: bool = False) -> Output:
        """The model's Output; ``trace``: with what its hops computed (``Output.trace``)."""
        # Learned entities: the resolver's inputs carry the question vectors (LinkCache).
        vectors = self.read_relation_names([] if self.learned else [q.masked for q in questions])
        if self.learned:
            lb = collate(self.link_inputs(questions), self.links.facts)
            return self.model.forward_learned(lb, self.links.facts, self.sparse, self.cfg.intersection,
                                              self.cfg.exclude_topics, trace=trace, attributes=self.attributes)
        return self.model(vectors, [q.topics for q in questions], self.sparse, self.cfg.intersection,
                          self.cfg.exclude_topics, trace=trace, attributes=self.attributes)

    def unknown_words(self, text: str, calibration: Optional[Calibration] = None,
                      linked: Iterable[str] = ()) -> List[str]:
        """The words of ``text`` that the calibration (default: the model's) has never seen in
        training questions or relation names (``Calibration.unknown_words``); with learned
        entities the words of entity names count as seen, since the text keeps the names, and so do
        ``linked``: the words of the spans the model linked (``linked_words``)."""
        cal = calibration or self.calibration
        if not cal.known_words:
            return []
        also = ()
        if self.learned:
            if self._entity_words is None:
                self._entity_words = frozenset(w for name in self.kb.entities for w in words(name))
            also = self._entity_words
        linked = frozenset(linked)
        return [w for w in cal.unknown_words(text, also) if w not in linked]

    def linked_words(self, out: Output) -> List[frozenset]:
        """Per question of ``out`` (``forward``'s), the words of the spans its linked entities come
        from (learned entities; none otherwise). A name typed with a typo ("tom hanx") is a word no
        training question had, though the resolver matched it: the word check refused 24.7% of
        the noisy-mention benchmark's questions for that (docs/results.md, "end to end")."""
        if out.linked is None or out.links is None:
            return [frozenset()] * out.scores.shape[0]
        spans = linked_mentions(out.resolution, [i.mentions for i in out.links], out.linked)
        return [frozenset(w for m in row for w in words(m.text)) for row in spans]

    @torch.no_grad()
    def predict(self, questions: List[Question], trace: bool = False, calibrated: bool = True):
        """(scores [B, E] with topic entities at -inf, Output), for questions in any mix of topic
        counts (the model runs one group of equal counts at a time). ``trace``: the Output keeps
        what the hops computed per question (``Output.trace``, for ``kgqa.evidence``).
        ``calibrated``: as the model answers (``kgqa.calibration``): entities of a type inconsistent
        with the chosen relations at -inf too, and a question it refuses (``refusals``, also kept in
        ``Output.refusals``) scored 0 everywhere, so that ``calibration.select`` gives it no answer;
        False: the model's scores alone."""
        if isinstance(questions, str) or any(not isinstance(q, Question) for q in questions):
            raise TypeError("QA.predict(): questions must be a list of kgqa.Question; for text, use ask() or "
                            "ask_many()")
        scores, out = self._scores(questions, trace)
        if calibrated:
            scores = self.calibration.restrict(scores, out.relations, out.hop_attention, self.sparse)
            out.refusals = self.refusals(questions, out)  # kept: kgqa.answers says why it abstains
            scores = self._refuse(scores, out.refusals)
        return scores, out

    def unknown_words_of(self, questions: List[Question], out: Output) -> List[List[str]]:
        """Per question, ``unknown_words`` with the words of the spans ``out`` linked seen."""
        return [self.unknown_words(q.text, linked=w) for q, w in zip(questions, self.linked_words(out))]

    def refusals(self, questions: List[Question], out: Output, unknown: Optional[List[List[str]]] = None,
                 conf: Optional[List[float]] = None) -> List[Optional[str]]:
        """Per question, why the calibration gives it no answer (words never seen in training, too
        little confidence in the relation path), or None. ``out``: ``predict``'s for them;
        ``unknown``, ``conf``: their ``unknown_words_of`` and ``confidence``, when the caller has
        them already."""
        conf = confidence(out.relations, out.hop_attention).tolist() if conf is None else conf
        unknown = self.unknown_words_of(questions, out) if unknown is None else unknown
        return [self.calibration.refusal(c, u) for c, u in zip(conf, unknown)]

    @staticmethod
    def _refuse(scores: torch.Tensor, why: List[Optional[str]]) -> torch.Tensor:
        refused = [i for i, w in enumerate(why) if w is not None]
        if not refused:
            return scores
        scores = scores.clone()
        at = torch.tensor(refused, device=scores.device)
        scores[at] = scores[at].clamp(max=0)  # -inf stays -inf
        return scores

    def _scores(self, questions: List[Question], trace: bool = False):
        self.model.eval()
        self.encoder.eval()  # a fine-tuned transformer's dropout off (the trainer turns it on each epoch)
        if self.learned or not self.cfg.intersection:
            out = self.forward(questions, trace)
        else:
            parts = []
            for c in sorted({len(q.topics) for q in questions}):
                idx = [i for i, q in enumerate(questions) if len(q.topics) == c]
                parts.append((idx, self.forward([questions[i] for i in idx], trace)))
            out = parts[0][1]
            if len(parts) > 1:
                flat = [i for idx, _ in parts for i in idx]
                order = torch.tensor(flat, device=self.device).argsort()
                out = Output(*(torch.cat([getattr(o, f) for _, o in parts])[order]
                               for f in ("scores", "relations", "hop_attention")))
                if parts[0][1].ops is not None:
                    # Every field of OpOutput, from the class: a field added there is joined here too.
                    out.ops = OpOutput(*(torch.cat([getattr(o.ops, f.name) for _, o in parts])[order]
                                         for f in dataclasses.fields(OpOutput)))
                if trace:  # a list per question: groups of different topic counts have different chains
                    traces = [t for _, o in parts for t in o.trace]
                    out.trace = [traces[i] for i in order.tolist()]
        # a superlative's answers are the selected members, not the whole path
        scores = out.scores if out.ops is None else chosen_scores(out.ops, out.scores)
        scores = scores.masked_fill(self.excluded(questions, out), float("-inf"))
        return scores, out

    def numbers(self, out: Output) -> List[Optional[int]]:
        """Per question the model's count answer, where the operation it chose is count, else None."""
        if out.ops is None:
            return [None] * out.scores.shape[0]
        count = OPERATIONS.index(COUNT)
        return [n if op == count else None for op, n in zip(out.ops.chosen.tolist(), out.ops.number.tolist())]

    def count_correct(self, q: Question, n: int) -> bool:
        """A count answer ``n`` to ``q`` is right when it is the question's count, or names one of its
        entity answers ("1999" for a year): exact match."""
        return n == q.count or any(self.kb.entities[a] == str(n) for a in q.answers)

    def evaluate(self, questions: List[Question], batch_size: int = 256, k: int = 5) -> dict:
        """Hits@1, Hits@k (the ranking, types restricted as the calibration says), answer-set F1
        with the model's calibration (an abstention scores 0), ``answered`` (the share not
        abstained on), ``answered_hits@1`` (the precision of those), ``precision_at_coverage``
        (Hits@1 of the questions the model is most confident about, by share; a question with
        words never seen in training last), per question type when the questions have one, and
        the linking accuracy with learned entities."""
        if not questions:
            raise ValueError("evaluate(): no questions to score")
        rows, order, linked, sure = [], [], [], []
        for batch in batches(questions, batch_size, self.cfg.intersection and not self.learned, shuffle=False):
            scores, out = self.predict(batch, calibrated=False)
            # The ranking with the types restricted; the answer sets without the questions refused.
            scores = self.calibration.restrict(scores, out.relations, out.hop_attention, self.sparse)
            unknown = self.unknown_words_of(batch, out)
            conf = confidence(out.relations, out.hop_attention).tolist()
            why = self.refusals(batch, out, unknown, conf)
            chosen = self.calibration.select(self._refuse(scores, why))
            part = question_metrics(scores, [q.answers for q in batch], k, chosen)
            for row, q, n, w in zip(part, batch, self.numbers(out), why):
                if n is not None:  # a count: exact match of the number, answered unless refused
                    right = float(self.count_correct(q, n))
                    row.update({"hits@1": right, f"hits@{k}": right, "f1": right if w is None else 0.0,
                                "answered": float(w is None)})
            rows += part
            # Coverage ranks by confidence; a question with unknown words comes last whatever it is.
            sure += [0.0 if u else c for u, c in zip(unknown, conf)]
            order += batch
            topics = out.topics
            if topics is not None:
                linked += [sorted(p) == sorted(q.topics) for p, q in zip(topics, batch) if q.topics]
        result = aggregate(rows, [q.qtype for q in order])
        answered = [r["hits@1"] for r in rows if r["answered"]]
        result["answered_hits@1"] = sum(answered) / len(answered) if answered else 0.0
        result["precision_at_coverage"] = precision_at_coverage(sure, [r["hits@1"] for r in rows])
        if linked:  # the brackets serve only to score the linking
            result["linking_accuracy"] = sum(linked) / len(linked)
            result["linking_n"] = len(linked)
        return result

    # ---- checkpoints: kgqa.checkpoint owns them; these stay for code written against QA ----------

    def save(self, out_dir, kb_path: Optional[str], extra: Optional[dict] = None) -> None:
        """``kgqa.checkpoint.save(self, ...)``."""
        from . import checkpoint

        checkpoint.save(self, out_dir, kb_path, extra)

    @classmethod
    def load(cls, model_dir, kb: Optional[KnowledgeBase] = None, device="cpu") -> "QA":
        """``kgqa.checkpoint.load(...)``: the model of ``kgqa train --out model_dir`` on ``device``."""
        from . import checkpoint

        return checkpoint.load(model_dir, kb, device)
