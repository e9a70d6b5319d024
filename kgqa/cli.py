"""kgqa: train, evaluate and query a question-answering model over a KB (``python -m kgqa``)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from . import checkpoint, parallel, two_entity
from .batching import split
from .config import TrainConfig
from .decoding import branch_links
from .encoder import DEFAULT_ENCODER
from .kb import KnowledgeBase
from .qa import QA
from .questions import Question, parse_question, read_questions, write_questions
from .trainer import train

DEMO_DIR = Path(__file__).parent / "data" / "demo"


def _load_kb(path, skip_bad_lines=False):
    t0 = time.perf_counter()
    kb = KnowledgeBase.load(path, on_error="skip" if skip_bad_lines else "raise")
    skipped = f", {len(kb.report.skipped)} malformed lines skipped" if kb.report.skipped else ""
    print(f"KB {path}: {kb.num_entities} entities, {len(kb.base_relations)} relations (+ inverses), "
          f"{len(kb.triples)} facts{skipped} ({time.perf_counter() - t0:.1f} s)")
    return kb


def _read(path, kb, qtype=None, what="questions", entities="gold"):
    qs, report = read_questions(path, kb, qtype, require_topics=entities == "gold")
    print(f"{what} {path}: {report.summary()}")
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
    kb = _load_kb(args.kb, args.skip_bad_lines)
    train_qs = _read(args.train, kb, args.train_qtype, "train", args.entities)
    for extra in args.extra_train or []:
        train_qs += _read(extra, kb, None, "train (extra)", args.entities)
    if args.valid:
        valid_qs = _read(args.valid, kb, args.valid_qtype, "valid", args.entities)
    else:
        train_qs, valid_qs = split(train_qs, args.valid_fraction, args.seed)
        print(f"validation: {len(valid_qs)} questions held out of the training file (seed {args.seed})")
    cfg = TrainConfig(hops=args.hops, encoder=args.encoder, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      seed=args.seed, intersection=not args.no_intersection, patience=args.patience,
                      max_minutes=args.max_minutes, entities=args.entities, finetune_encoder=args.finetune_encoder,
                      encoder_lr=args.encoder_lr)
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
    qs = _read(args.questions, qa.kb, args.qtype, entities=qa.cfg.entities)
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
        if len(topics) > qa.model.branches and qa.cfg.intersection:
            return f"cannot answer: at most {qa.model.branches} bracketed entities"
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
    write_questions(args.out, qs, kb)
    if args.qtype_out:
        Path(args.qtype_out).write_text("".join(q.qtype + "\n" for q in qs))
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="kgqa", description=__doc__)
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
    t.add_argument("--valid-fraction", type=float, default=0.1)
    t.add_argument("--hops", type=int, required=True, help="the most hops a question may take")
    t.add_argument("--out", required=True, help="directory for model.safetensors and config.json")
    t.add_argument("--encoder", default=DEFAULT_ENCODER,
                   help=f"transformers model name or path (frozen unless --finetune-encoder), or 'scratch' "
                        f"(default {DEFAULT_ENCODER})")
    t.add_argument("--finetune-encoder", action="store_true",
                   help="train the transformers encoder with the model (default: frozen, each question encoded "
                        "once); every batch then runs it forward and backward, which wants a GPU")
    t.add_argument("--encoder-lr", type=float, default=2e-5, help="the fine-tuned encoder's learning rate")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--patience", type=int, default=4)
    t.add_argument("--max-minutes", type=float, help="stop after the epoch that passes this")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int)
    t.add_argument("--no-intersection", action="store_true", help="one branch seeded with every topic entity")
    t.add_argument("--entities", choices=("gold", "learned"), default="gold",
                   help="gold: the [bracketed] topic entities; learned: the model finds them (brackets stripped)")
    t.add_argument("--skip-bad-lines", action="store_true", help="skip malformed KB lines (counted) instead of failing")
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
    a.add_argument("--top", type=int, default=5)
    a.add_argument("--entities", choices=("gold", "learned"), help="default: as trained")
    a.add_argument("--device", default="auto", help=device_help)
    a.add_argument("question", nargs="+")
    a.set_defaults(fn=cmd_ask)

    m = sub.add_parser("make-2entity", help="derive 2-entity (intersection) questions from a KB")
    m.add_argument("--kb", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--qtype-out")
    m.add_argument("--n", type=int, default=2000)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--hops", type=int, choices=(1, 2), default=1,
                   help="hops a branch: 1 'which movies starred [A] and were directed by [B]', "
                        "2 'which actors appeared in films directed by [A] and in films written by [B]'")
    m.set_defaults(fn=cmd_make_2entity)

    d = sub.add_parser("demo", help="train on the embedded movie KB and answer a few questions")
    d.add_argument("--encoder", default=DEFAULT_ENCODER)
    d.add_argument("--epochs", type=int, default=30)
    d.add_argument("--out")
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("--device", default="auto", help=device_help)
    d.set_defaults(fn=cmd_demo)

    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f"kgqa {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
