"""kgqa: train, evaluate and query a question-answering model over a KB (``python -m kgqa``)."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import torch

from . import checkpoint, parallel, two_entity
from .batching import split
from .config import TrainConfig
from .decoding import branch_links
from .encoder import DEFAULT_ENCODER
from .kb import CacheWarning, KnowledgeBase
from .qa import QA, max_topics
from .relation_head import RELATION_HEADS
from .questions import Question, parse_question, read_questions, write_questions
from .trainer import train

DEMO_DIR = Path(__file__).parent / "data" / "demo"


# ---- arguments: each checked where argparse reads it (exit status 2, one line naming it) -------


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (still exit status 2): the usage is in --help."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _checked(convert, what, ok):
    """An argparse type: ``convert(text)``, rejected unless ``ok`` of it."""

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


POSITIVE_INT = _checked(int, "an integer >= 1", lambda n: n >= 1)
POSITIVE = _checked(float, "a number > 0", lambda x: math.isfinite(x) and x > 0)
FRACTION = _checked(float, "a fraction in [0, 1)", lambda x: 0 <= x < 1)
SEED = _checked(int, "an integer in [0, 2**64)", lambda n: 0 <= n < 2**64)  # torch.manual_seed's range
THREADS = _checked(int, "an integer in [1, 2**31)", lambda n: 1 <= n < 2**31)  # torch.set_num_threads' (a C int)


def _nearest_existing(path: Path) -> Path:
    """``path``, or the nearest folder above it that exists (that is where it would be made)."""
    while not os.path.exists(path) and path != path.parent:
        path = path.parent
    return path


def writable_dir(text: str) -> str:
    """An argparse type for an output folder (``--out``): it, or the nearest folder above it that
    exists, must be a writable folder; checked when the arguments are read, not after training."""
    path = Path(text)
    here = _nearest_existing(path)
    if not os.path.isdir(here):
        raise argparse.ArgumentTypeError(f"cannot write {text}: {here} is not a folder")
    if not os.access(here, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text}: {here} is not writable")
    return text


def writable_file(text: str) -> str:
    """An argparse type for an output file: not a folder, in an existing writable folder."""
    path = Path(text)
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"cannot write {text}: it is a folder")
    folder = path.parent
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"cannot write {text}: no folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"cannot write {text}: not writable")
    return text


# ---- data ---------------------------------------------------------------------------------------


def _load_kb(path, skip_bad_lines=False):
    t0 = time.perf_counter()
    kb = KnowledgeBase.load(path, on_error="skip" if skip_bad_lines else "raise")
    skipped = kb.report.skipped
    skipped = f", {len(skipped)} bad lines skipped (the first: {skipped[0]})" if skipped else ""
    print(f"KB {path}: {kb.num_entities} entities, {len(kb.base_relations)} relations (+ inverses), "
          f"{len(kb.triples)} facts{skipped} ({time.perf_counter() - t0:.1f} s)")
    return kb


def _read(path, kb, qtype=None, what="questions", arg="--questions", entities="gold", limit=None):
    """The usable questions of ``path`` (the file of argument ``arg``); a ValueError when there
    is none. ``limit``: the most topic entities the model takes (``kgqa.qa.max_topics``)."""
    qs, report = read_questions(path, kb, qtype, require_topics=entities == "gold", max_topics=limit)
    print(f"{what} {path}: {report.summary()}")
    if not qs:
        raise ValueError(f"{arg} {path}: no question can be used ({report.summary()})")
    return qs


def _device(name) -> torch.device:
    """--device resolved (a missing GPU is a ValueError naming --device); a GPU becomes the current
    CUDA device, which kernels launched on the current device (Triton's) use."""
    device = parallel.resolve_device(name)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def cmd_train(args) -> int:
    """Under torchrun, one process per rank (data-parallel, kgqa/parallel.py): only rank 0 prints
    and writes the checkpoint. With a GPU, each rank trains on its own (LOCAL_RANK) over nccl."""
    device = parallel.resolve_device(args.device)  # before the process group: a bad --device fails alone
    checkpoint.check_destination(args.out)  # before training: an --out that save() would refuse
    with parallel.launch(device) as world, world.quiet():
        return _train(args, world, device)


def _train(args, world, device) -> int:
    torch.set_num_threads(args.threads or torch.get_num_threads())
    cfg = TrainConfig(hops=args.hops, encoder=args.encoder, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      seed=args.seed, intersection=not args.no_intersection, patience=args.patience,
                      max_minutes=args.max_minutes, entities=args.entities, finetune_encoder=args.finetune_encoder,
                      encoder_lr=args.encoder_lr, relation_head=args.relation_head)
    kb = _load_kb(args.kb, args.skip_bad_lines)
    limit = max_topics(cfg)
    train_qs = _read(args.train, kb, args.train_qtype, "train", "--train", args.entities, limit)
    for extra in args.extra_train or []:
        train_qs += _read(extra, kb, None, "train (extra)", "--extra-train", args.entities, limit)
    if args.valid:
        valid_qs = _read(args.valid, kb, args.valid_qtype, "valid", "--valid", args.entities, limit)
    else:
        train_qs, valid_qs = split(train_qs, args.valid_fraction, args.seed)
        print(f"validation: {len(valid_qs)} questions held out of the training file (seed {args.seed})")
        if not train_qs:
            raise ValueError(f"--valid-fraction {args.valid_fraction} holds out every usable question of --train "
                             f"({len(valid_qs)}) for validation: none is left to train on (pass --valid FILE)")
    print(f"device: {device}" + (f" (rank {world.rank} of {world.size})" if world.distributed else ""))
    qa = train(kb, train_qs, valid_qs, cfg, progress=not args.no_progress, device=device)
    if world.is_main:
        valid = qa.evaluate(valid_qs)
        checkpoint.save(qa, args.out, str(Path(args.kb).resolve()),
                        {"valid": valid, "train_minutes": qa.train_minutes, "world_size": world.size,
                         "device": device.type})
        print(f"trained in {qa.train_minutes:.1f} min; valid Hits@1 {valid['hits@1']:.4f} on {valid['n']}; "
              f"saved to {args.out}")
    world.barrier()  # the other ranks wait for the checkpoint
    return 0


def _print_metrics(result):
    print(f"Hits@1 {result['hits@1']:.4f}  Hits@5 {result['hits@5']:.4f}  F1 {result['f1']:.4f}  (n = {result['n']})")
    for t, m in result.get("per_qtype", {}).items():
        print(f"  {t:<48} Hits@1 {m['hits@1']:.4f}  (n = {m['n']})")


def _set_entities(qa: QA, entities) -> None:
    if entities == "learned" and qa.model.resolver is None:
        raise ValueError("--entities learned: this model was trained with --entities gold and has no entity resolver")
    qa.cfg.entities = entities or qa.cfg.entities


def cmd_eval(args) -> int:
    device = _device(args.device)
    kb = _load_kb(args.kb) if args.kb else None
    qa = checkpoint.load(args.model, kb, device)
    _set_entities(qa, args.entities)
    if args.no_intersection:
        qa.cfg.intersection = False
    qs = _read(args.questions, qa.kb, args.qtype, entities=qa.cfg.entities, limit=qa.max_topics)
    result = qa.evaluate(qs)
    _print_metrics(result)
    if "linking_accuracy" in result:
        print(f"entity linking accuracy {result['linking_accuracy']:.4f} (n = {result['linking_n']} bracketed questions)")
    if args.json:
        print(json.dumps(result))
    return 0


def explain(qa: QA, text: str, top: int = 5) -> str:
    if qa.learned:
        q = Question(text, [], [])
    else:
        try:
            topics = parse_question(text, qa.kb)
        except KeyError as e:
            return f"cannot answer: {e.args[0]}"
        if not topics:
            return "cannot answer: put the topic entity in [brackets], e.g. what films did [Tom Hanks] star in"
        if qa.max_topics is not None and len(topics) > qa.max_topics:
            return f"cannot answer: at most {qa.max_topics} bracketed entities"
        q = Question(text, topics, [])
    scores, out = qa.predict([q])
    lines = [f"Q: {text}"]
    if out.topics is not None:
        topics = out.topics[0]
        if not topics:
            return f"Q: {text}\n  cannot answer: no span of the question names an entity of the KB"
        lines.append("  entities: " + ", ".join(describe_links(qa, out)))
    values, ids = scores[0].topk(min(top, qa.kb.num_entities))
    for v, e in zip(values.tolist(), ids.tolist()):
        if v > float("-inf"):
            lines.append(f"  {v:.3f}  {qa.kb.entities[e]}")
    att = out.hop_attention[0].tolist()
    branches = len(topics) if qa.cfg.intersection else 1
    for t in range(qa.cfg.hops):
        rels = []
        for j in range(branches):
            p, r = out.relations[0, t, j].max(0)
            who = f"[{qa.kb.entities[topics[j]]}] " if branches > 1 else ""
            rels.append(f"{who}{qa.kb.relations[int(r)]} ({float(p):.2f})")
        lines.append(f"  hop {t + 1} (attention {att[t]:.2f}): " + ", ".join(rels))
    return "\n".join(lines)


def describe_links(qa: QA, out) -> list:
    """The first question's linked spans, one per branch, as 'span' -> entity (probabilities)."""
    links = branch_links(out.resolution, out.links[0].mentions, 0, branches=len(out.topics[0]))
    parts = [f"'{link.mention.text}' -> {qa.kb.entities[link.entity]} "
             f"(span {link.span_p:.2f}, entity {link.entity_p:.2f})" for link in links]
    if qa.cfg.intersection:
        parts.append(f"P(two entities) {float(out.resolution.two[0, 0]):.2f}")
    return parts


def cmd_ask(args) -> int:
    device = _device(args.device)
    kb = _load_kb(args.kb) if args.kb else None
    qa = checkpoint.load(args.model, kb, device)
    _set_entities(qa, args.entities)
    for text in args.question:
        print(explain(qa, text, args.top))
    return 0


def cmd_make_2entity(args) -> int:
    kb = _load_kb(args.kb)
    qs = two_entity.generate(kb, args.n, args.seed, hops=args.hops)
    if not qs:
        raise ValueError(f"--kb {args.kb}: no 2-entity question of {args.hops} hop{'s' if args.hops > 1 else ''} a "
                         f"branch can be made from it (no two facts whose intersection changes the answer)")
    write_questions(args.out, qs, kb)
    if args.qtype_out:
        Path(args.qtype_out).write_text("".join(q.qtype + "\n" for q in qs), encoding="utf-8")
    print(f"wrote {len(qs)} 2-entity questions ({args.hops} hop{'s' if args.hops > 1 else ''} a branch) to {args.out}")
    return 0


def cmd_demo(args) -> int:
    """Trains on the embedded movie KB, prints Hits@1 and answers a few questions."""
    t0 = time.perf_counter()
    device = _device(args.device)
    out = args.out or os.path.join(os.environ.get("TMPDIR", "/tmp"), "kgqa-demo-model")
    checkpoint.check_destination(out)
    kb = _load_kb(DEMO_DIR / "kb.txt")
    train_qs = _read(DEMO_DIR / "qa_train.txt", kb, DEMO_DIR / "qa_train_qtype.txt", "train")
    valid_qs = _read(DEMO_DIR / "qa_valid.txt", kb, DEMO_DIR / "qa_valid_qtype.txt", "valid")
    test_qs = _read(DEMO_DIR / "qa_test.txt", kb, DEMO_DIR / "qa_test_qtype.txt", "test")
    cfg = TrainConfig(hops=2, encoder=args.encoder, epochs=args.epochs, max_minutes=2.0, seed=0)
    qa = train(kb, train_qs, valid_qs, cfg, progress=not args.no_progress, device=device)
    checkpoint.save(qa, out, str((DEMO_DIR / "kb.txt").resolve()))
    result = qa.evaluate(test_qs)
    print(f"\nheld-out test questions of the demo KB, after {qa.train_minutes:.1f} min of training:")
    _print_metrics(result)
    kinds = {}
    for q in test_qs:
        kinds.setdefault(q.qtype.split(":")[0], q)
    print()
    for q in kinds.values():
        print(explain(qa, q.text, 3))
        print(f"  (expected: {', '.join(kb.entities[a] for a in q.answers[:3])}{' ...' if len(q.answers) > 3 else ''})\n")
    print(f"model saved to {out}: try `python -m kgqa ask --model {out} \"who directed [{kb.entities[kb.triples[0, 0]]}]\"`")
    print(f"demo took {time.perf_counter() - t0:.0f} s")
    return 0


def _one_line_cache_warnings(command, show):
    """``warnings.showwarning`` printing a CacheWarning as one line, ``kgqa <command>: warning:
    ...``; any other warning goes to ``show``."""

    def show_warning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, CacheWarning):
            print(f"kgqa {command}: warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    return show_warning


def main(argv=None) -> int:
    ap = _Parser(prog="kgqa", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    device_help = ("where the model runs: cpu, cuda, cuda:N, or auto (the default: cuda when torch sees a GPU, else "
                   "cpu); under torchrun, cuda is each rank's GPU LOCAL_RANK")

    t = sub.add_parser("train", help="train a model from question/answer pairs")
    t.add_argument("--kb", required=True, help="KB file: subject|relation|object (MetaQA kb.txt) or tab-separated")
    t.add_argument("--train", required=True, help="questions: question<TAB>answer1|answer2, topic entities in [brackets]")
    t.add_argument("--train-qtype", help="question types aligned with --train")
    t.add_argument("--extra-train", action="append", help="more training questions (repeatable)")
    t.add_argument("--valid", help="validation questions (default: --valid-fraction of --train)")
    t.add_argument("--valid-qtype")
    t.add_argument("--valid-fraction", type=FRACTION, default=0.1,
                   help="without --valid: the share of --train held out for validation, at least one question "
                        "(default 0.1)")
    t.add_argument("--hops", type=POSITIVE_INT, required=True, help="the most hops a question may take")
    t.add_argument("--out", type=writable_dir, required=True, help="directory for model.safetensors and config.json")
    t.add_argument("--encoder", default=DEFAULT_ENCODER,
                   help=f"transformers model name or path (frozen unless --finetune-encoder), or 'scratch' "
                        f"(default {DEFAULT_ENCODER})")
    t.add_argument("--finetune-encoder", action="store_true",
                   help="train the transformers encoder with the model (default: frozen, each question encoded "
                        "once); every batch then runs it forward and backward, which wants a GPU")
    t.add_argument("--encoder-lr", type=POSITIVE, default=2e-5, help="the fine-tuned encoder's learning rate")
    t.add_argument("--epochs", type=POSITIVE_INT, default=20)
    t.add_argument("--batch-size", type=POSITIVE_INT, default=64)
    t.add_argument("--lr", type=POSITIVE, default=1e-3)
    t.add_argument("--patience", type=POSITIVE_INT, default=4)
    t.add_argument("--max-minutes", type=POSITIVE, help="stop after the epoch that passes this")
    t.add_argument("--seed", type=SEED, default=0)
    t.add_argument("--threads", type=THREADS)
    t.add_argument("--no-intersection", action="store_true", help="one branch seeded with every topic entity")
    t.add_argument("--entities", choices=("gold", "learned"), default="gold",
                   help="gold: the [bracketed] topic entities; learned: the model finds them (brackets stripped)")
    t.add_argument("--relation-head", choices=RELATION_HEADS, default=TrainConfig.relation_head,
                   help="names: relations scored by their names' words, read by the encoder (a relation seldom or "
                        "never seen in training can be chosen); ids: a classifier over relation ids "
                        f"(default {TrainConfig.relation_head})")
    t.add_argument("--skip-bad-lines", action="store_true",
                   help="skip malformed KB lines and lines that are not UTF-8 (counted) instead of failing")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--device", default="auto", help=device_help)
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("eval", help="Hits@1, Hits@5, answer-set F1 (per question type with --qtype)")
    e.add_argument("--model", required=True)
    e.add_argument("--questions", required=True)
    e.add_argument("--qtype")
    e.add_argument("--kb", help="the KB, if it moved since training")
    e.add_argument("--no-intersection", action="store_true")
    e.add_argument("--entities", choices=("gold", "learned"), help="default: as trained")
    e.add_argument("--json", action="store_true", help="print the metrics as a JSON object on the last line")
    e.add_argument("--device", default="auto", help=device_help)
    e.set_defaults(fn=cmd_eval)

    a = sub.add_parser("ask", help="answer questions, with the relation of each hop and the hop attention")
    a.add_argument("--model", required=True)
    a.add_argument("--kb")
    a.add_argument("--top", type=POSITIVE_INT, default=5)
    a.add_argument("--entities", choices=("gold", "learned"), help="default: as trained")
    a.add_argument("--device", default="auto", help=device_help)
    a.add_argument("question", nargs="+")
    a.set_defaults(fn=cmd_ask)

    m = sub.add_parser("make-2entity", help="derive 2-entity (intersection) questions from a KB")
    m.add_argument("--kb", required=True)
    m.add_argument("--out", type=writable_file, required=True)
    m.add_argument("--qtype-out", type=writable_file)
    m.add_argument("--n", type=POSITIVE_INT, default=2000)
    m.add_argument("--seed", type=SEED, default=0)
    m.add_argument("--hops", type=int, choices=(1, 2), default=1,
                   help="hops a branch: 1 'which movies starred [A] and were directed by [B]', "
                        "2 'which actors appeared in films directed by [A] and in films written by [B]'")
    m.set_defaults(fn=cmd_make_2entity)

    d = sub.add_parser("demo", help="train on the embedded movie KB and answer a few questions")
    d.add_argument("--encoder", default=DEFAULT_ENCODER)
    d.add_argument("--epochs", type=POSITIVE_INT, default=30)
    d.add_argument("--out", type=writable_dir)
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("--device", default="auto", help=device_help)
    d.set_defaults(fn=cmd_demo)

    args = ap.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_cache_warnings(args.command, warnings.showwarning)
        try:
            return args.fn(args)
        except (OSError, ValueError, ImportError) as err:  # OSError: a file that cannot be read or written
            print(f"kgqa {args.command}: {err}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
