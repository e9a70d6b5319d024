"""kgqa: train, evaluate and query a question-answering model over a KB (``python -m kgqa``)."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import contextvars
import json
import math
import os
import select
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from . import distribution, policy
from .config import (COPY_KB_MAX_FACTS, DEFAULT_ENCODER, MAX_BUDGET, MENTION_NOISE_KINDS, NUMERIC_MIN_SHARE,
                     OPERATIONS_MODES, QUESTION_OPS, QUESTIONS_DEFAULT_N, QUESTIONS_MAX_ANSWERS, QUESTIONS_MAX_HOPS,
                     RELATION_HEADS, RESTRICT_HOPS_MODES, RETRIEVALS, TrainConfig)

if TYPE_CHECKING:  # annotations only: these modules import torch (see _import_model_layer)
    from .answers import Response
    from .evidence import EvidencePath

DEMO_DIR = Path(__file__).parent / "data" / "demo"
DEMO_OUT = os.path.join(os.environ.get("TMPDIR", "/tmp"), "kgqa-demo-model")  # where `kgqa demo` saves its model
TRAIN_DEFAULTS = TrainConfig()  # `kgqa train`'s defaults are TrainConfig's
NO_WORD_CHECK_HELP = ("answer questions with words that no training question and no relation name has (default: no "
                      "answer for them, which refuses what the KB does not hold, and also questions worded unlike "
                      "the training ones: docs/model-layer.md)")


# ---- the model layer, imported when a command runs ---------------------------------------------
# torch, kgqa_kernels and the modules built on them take seconds to import; `kgqa --help`, `kgqa
# --version` and a rejected argument need none of them, so this module imports them only when a
# command runs (main calls _import_model_layer after parsing). The commands below use these names
# as if imported at the top; a module-level import of any of them here would make every start pay
# for torch again (tests/kgqa/test_cli_reliability.py checks that --help does not import it).
torch = answers = checkpoint = parallel = two_entity = CacheWarning = KnowledgeBase = None
QA = max_topics = read_questions = write_questions = train = None
generate = kind_of = kinds = shares = write_generated = checked_follow_each = None


def _import_model_layer() -> None:
    """Binds the names above (idempotent; the imports are cached after the first call)."""
    global torch, answers, checkpoint, parallel, two_entity, CacheWarning, KnowledgeBase
    global QA, max_topics, read_questions, write_questions, train, generate, kind_of, kinds, shares, write_generated
    global checked_follow_each
    import torch

    from . import answers, checkpoint, parallel, two_entity
    from .generate import generate, kind_of, kinds, shares, write_generated
    from .kb import CacheWarning, KnowledgeBase
    from .model import checked_follow_each
    from .qa import QA, max_topics
    from .questions import read_questions, write_questions
    from .trainer import train


# ---- output: results on standard output, progress silenced by --quiet --------------------------

_QUIET = contextvars.ContextVar("kgqa_quiet", default=False)
_RESULTS = contextvars.ContextVar("kgqa_results", default=None)  # where print_result prints under _only_results


def info(*args, **kwargs) -> None:
    """A line that says what is going on (what was read, the device, progress), not a result:
    standard output, unless --quiet."""
    if not _QUIET.get():
        print(*args, **kwargs)


def print_result(*args) -> None:
    """A line of a command's result: standard output, --quiet or not (also inside _only_results)."""
    print(*args, file=_RESULTS.get() or sys.stdout)


@contextlib.contextmanager
def _only_results(quiet: bool):
    """Under --quiet, standard output discarded but for what ``print_result`` prints: for a command whose
    progress comes from code that prints it (the trainer's line per epoch)."""
    if not quiet:
        yield
        return
    token = _RESULTS.set(sys.stdout)
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            yield
    finally:
        _RESULTS.reset(token)


@contextlib.contextmanager
def _quiet(quiet: bool):
    """--quiet for the duration of a command: ``info`` silent, and Hugging Face's progress bars (a
    model download's) off, and back on after if they were on."""
    token = _QUIET.set(quiet)
    hub = None
    if quiet:
        with contextlib.suppress(ImportError):
            from huggingface_hub import utils as hub
        if hub is not None and not hub.are_progress_bars_disabled():
            hub.disable_progress_bars()
        else:
            hub = None
    try:
        yield
    finally:
        _QUIET.reset(token)
        if hub is not None:
            hub.enable_progress_bars()


# ---- arguments: each checked where argparse reads it (exit status 2, one line naming it) -------


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, where it has one: not for a flag (default False)
    or an option without a default (None; its help says what happens without it)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if action.option_strings and default is not None and default is not False \
                and default != argparse.SUPPRESS and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (still exit status 2): the usage is in --help. Its
    subparsers are _Parsers too, with the same help formatter."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

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


def _one_each(choices, what: str):
    """An argparse type: comma-separated ``what`` of ``choices``, each once, as a list."""
    def parse(text: str) -> list:
        picked = [o.strip() for o in text.split(",")]
        if any(o not in choices for o in picked) or len(set(picked)) != len(picked):
            raise argparse.ArgumentTypeError(f"expected {what} of {','.join(choices)}, comma-separated, each "
                                             f"once, got {text!r}")
        return picked

    return parse


question_ops = _one_each(QUESTION_OPS, "operations")
noise_kinds = _one_each(MENTION_NOISE_KINDS, "kinds")


POSITIVE_INT = _checked(int, "an integer >= 1", lambda n: n >= 1)
COUNT = _checked(int, "an integer >= 0", lambda n: n >= 0)
POSITIVE = _checked(float, "a number > 0", lambda x: math.isfinite(x) and x > 0)
FRACTION = _checked(float, "a fraction in [0, 1)", lambda x: 0 <= x < 1)
SHARE = _checked(float, "a share in [0, 1]", lambda x: 0 <= x <= 1)
BUDGET = _checked(int, f"an integer in [1, {MAX_BUDGET}]", lambda n: 1 <= n <= MAX_BUDGET)
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
    info(f"KB {path}: {kb.num_entities} entities, {len(kb.base_relations)} relations (+ inverses), "
         f"{len(kb.triples)} facts{skipped} ({time.perf_counter() - t0:.1f} s)")
    return kb


def _read(path, kb, qtype=None, what="questions", arg="--questions", entities="gold", limit=None):
    """The usable questions of ``path`` (the file of argument ``arg``); a ValueError when there
    is none. ``limit``: the most topic entities the model takes (``kgqa.qa.max_topics``)."""
    qs, report = read_questions(path, kb, qtype, require_topics=entities == "gold", max_topics=limit)
    info(f"{what} {path}: {report.summary()}")
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


def _check_out(out, force: bool) -> None:
    """A ValueError naming --out and --force when ``out`` holds a model (a checkpoint's files) and
    ``force`` is not given: a model is replaced only when asked to."""
    path = Path(out)
    if not force and path.is_dir() and any(os.path.lexists(path / name) for name in checkpoint.FILES):
        raise ValueError(f"--out {out} holds a model already; pass --force to replace it")


def cmd_train(args) -> int:
    """Under torchrun, one process per rank (data-parallel, kgqa/parallel.py): only rank 0 prints
    and writes the checkpoint. With a GPU, each rank trains on its own (LOCAL_RANK) over nccl.
    Under --quiet, only the result lines (``print_result``) reach standard output."""
    device = parallel.resolve_device(args.device)  # before the process group: a bad --device fails alone
    _check_out(args.out, args.force)  # before training, as is the next check
    checkpoint.check_destination(args.out)  # an --out that save() would refuse
    args.no_progress = args.no_progress or args.quiet
    with parallel.launch(device) as world, world.quiet(), _only_results(args.quiet):
        return _train(args, world, device)


def _train(args, world, device) -> int:
    torch.set_num_threads(args.threads or torch.get_num_threads())
    cfg = TrainConfig(hops=args.hops, encoder=args.encoder, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      seed=args.seed, intersection=not args.no_intersection, patience=args.patience,
                      valid_fraction=args.valid_fraction, max_minutes=args.max_minutes, entities=args.entities,
                      finetune_encoder=args.finetune_encoder, encoder_lr=args.encoder_lr,
                      relation_head=args.relation_head, word_check=not args.no_word_check,
                      restrict_hops=args.restrict_hops, topic_types=not args.no_topic_types,
                      operations=args.operations, retrieval=args.retrieval, budget=args.budget,
                      mention_noise=args.mention_noise, mention_noise_kinds=args.mention_noise_kinds or [])
    kb = _load_kb(args.kb, args.skip_bad_lines)
    limit = max_topics(cfg)
    train_qs = _read(args.train, kb, args.train_qtype, "train", "--train", args.entities, limit)
    for extra in args.extra_train or []:
        train_qs += _read(extra, kb, None, "train (extra)", "--extra-train", args.entities, limit)
    if args.valid:
        valid_qs = _read(args.valid, kb, args.valid_qtype, "valid", "--valid", args.entities, limit)
    else:
        # kgqa.policy: the share held out, or none (too few to validate on, or --valid-fraction 0)
        train_qs, valid_qs, warning = policy.hold_out(train_qs, cfg, "--valid-fraction", "--valid FILE")
        if warning:
            print(f"kgqa train: {warning}", file=sys.stderr)  # seen under --quiet too
        print(f"validation: {len(valid_qs)} questions held out of the training file (seed {args.seed})" if valid_qs
              else "validation: none" + (" (--valid-fraction 0)" if args.valid_fraction == 0 else ""))
    print(f"device: {device}" + (f" (rank {world.rank} of {world.size})" if world.distributed else ""))
    qa = train(kb, train_qs, valid_qs, cfg, progress=not args.no_progress, device=device)
    if world.is_main:
        valid = qa.evaluate(valid_qs) if valid_qs else None
        checkpoint.save(qa, args.out, str(Path(args.kb).resolve()),
                        {"valid": valid, "best_epoch": qa.best_epoch, "train_minutes": qa.train_minutes,
                         "world_size": world.size, "device": device.type}, copy_kb=args.copy_kb)
        scored = f"valid Hits@1 {valid['hits@1']:.4f} on {valid['n']}" if valid else "no validation"
        print_result(f"trained in {qa.train_minutes:.1f} min; kept epoch {qa.best_epoch}; {scored}; "
                     f"saved to {args.out}")
        if args.json:
            print_result(json.dumps(_train_summary(args, qa, valid)))
    world.barrier()  # the other ranks wait for the checkpoint
    return 0


def _train_summary(args, qa, valid: dict) -> dict:
    """`kgqa train --json`'s object: the final validation metrics, the training time and epochs run,
    the model's folder (absolute) and the epoch whose weights were kept."""
    return {"valid": valid, "train_minutes": qa.train_minutes, "epochs": len(qa.cfg.history),
            "best_epoch": qa.best_epoch, "out": str(Path(args.out).resolve())}


def _print_metrics(result):
    print(f"Hits@1 {result['hits@1']:.4f}  Hits@5 {result['hits@5']:.4f}  F1 {result['f1']:.4f}  (n = {result['n']})")
    for t, m in result.get("per_qtype", {}).items():
        print(f"  {t:<48} Hits@1 {m['hits@1']:.4f}  (n = {m['n']})")


def _set_entities(qa: QA, entities) -> None:
    if entities == "learned" and qa.model.resolver is None:
        raise ValueError("--entities learned: this model was trained with --entities gold and has no entity resolver")
    qa.cfg.entities = entities or qa.cfg.entities


def _set_follow_each(qa: QA, n: int) -> None:
    """--follow-each: how many of the first branch's (span, entity) pairs a learned-entities model
    follows each alone at inference (RigelModel.each_candidate); 0, the soft seed."""
    if not qa.learned:
        raise ValueError("--follow-each: this model has gold entities; it follows the bracketed ones")
    qa.model.follow_each = qa.model.dims["follow_each"] = checked_follow_each(n, "--follow-each")


def cmd_eval(args) -> int:
    device = _device(args.device)
    kb = _load_kb(args.kb) if args.kb else None
    qa = checkpoint.load(args.model, kb, device)
    _set_entities(qa, args.entities)
    if args.no_word_check:
        qa.calibration = dataclasses.replace(qa.calibration, known_words=())
    if args.no_intersection:
        qa.cfg.intersection = False
    if args.follow_each is not None:
        _set_follow_each(qa, args.follow_each)
    qs = _read(args.questions, qa.kb, args.qtype, entities=qa.cfg.entities, limit=qa.max_topics)
    result = qa.evaluate(qs)
    _print_metrics(result)
    _print_answering(result, qa)
    if "linking_accuracy" in result:
        print(f"entity linking accuracy {result['linking_accuracy']:.4f} (n = {result['linking_n']} bracketed questions)")
    if args.json:
        cal = qa.calibration.to_dict()
        cal["known_words"] = len(qa.calibration.known_words)  # a count: the list is in config.json
        print(json.dumps({**result, "calibration": cal}))
    return 0


def _print_answering(result, qa: QA) -> None:
    """What the F1 above answered with, how often the model abstained, and Hits@1 against coverage."""
    n, answered = result["n"], result["answered"]
    print(f"answer sets: {qa.calibration.describe()}")
    print(f"answered {100 * answered:.1f}% ({round(n * (1 - answered))} of {n} abstained); Hits@1 of the answered "
          f"{result['answered_hits@1']:.4f}")
    print("Hits@1 of the most confident: " + "  ".join(f"{100 * float(c):g}% {p:.4f}"
                                                        for c, p in result["precision_at_coverage"].items()))


def describe_links(r: Response) -> list:
    """Learned entities: each branch's span as 'span' -> entity (probabilities), and P(two entities)."""
    parts = [f"'{link.span}' -> {link.entity} (span {link.span_p:.2f}, entity {link.entity_p:.2f})"
             for link in r.links]
    if r.two_entities is not None:
        parts.append(f"P(two entities) {r.two_entities:.2f}")
    return parts


def describe_path(p: EvidencePath) -> str:
    """'[topic] -r (0.95)-> x <-s (0.80)- y': each fact the way the KB states it, with the weight
    of its relation at that hop."""
    text = f"[{p.topic}]"
    for step in p.steps:
        relation, weight = step.fact[1], f"{step.weight:.2f}"
        arrow = f"-{relation} ({weight})->" if relation == step.relation else f"<-{relation} ({weight})-"
        text += f" {arrow} {step.target}"
    return text


def format_response(r: Response) -> str:
    """A Response as `kgqa ask` prints it: each answer with the paths that carry its score (the
    share of the score first), so what is shown is what the answer came from."""
    lines = [f"Q: {r.question}"]
    lines += [f"  read [{m.name}] as [{m.entity}] ({m.how} match)" for m in r.read_as]
    if r.links:
        lines.append("  entities: " + ", ".join(describe_links(r)))
    if r.error is not None:
        lines.append(f"  cannot answer: {r.error}")
        return "\n".join(lines)
    if r.operation is not None:
        lines.append(f"  operation: {r.operation} (" + ", ".join(f"{op} {p:.2f}" for op, p in r.operations.items())
                     + ")")
    if r.abstained:
        lines.append(f"  no answer: {r.abstain_reason}")
    if r.counted:
        lines.append(f"  counted: {', '.join(r.counted[:10])}{' ...' if len(r.counted) > 10 else ''}")
    for a in r.answers:
        lines.append(f"  {a.score:.3f}  {a.entity}")
        lines += [f"      {p.share:.3f}  {describe_path(p)}" for p in a.evidence]
    lines.append("  hop attention: " + ", ".join(f"{t + 1} hop{'s' if t else ''} {w:.2f}"
                                                for t, w in enumerate(r.hop_attention)))
    return "\n".join(lines)


def explain(qa: QA, text: str, top: int = 5, paths: int = 3) -> str:
    """``format_response`` of ``qa.ask_many([text], top, paths)``."""
    return format_response(qa.ask_many([text], top, paths)[0])


def _line_batches(stream, size: int):
    """The lines of ``stream`` in lists of at most ``size``. A list ends early when no further line
    is waiting, so a terminal, or a program that writes a question and waits for its answer, gets
    each answer at once, while a file goes ``size`` lines a model run. The raw file is read (a byte
    at a time), not Python's read-ahead buffer, so select() sees every line not yet taken."""
    raw = getattr(getattr(stream, "buffer", None), "raw", None)
    if raw is None:  # text with no file under it (io.StringIO): nothing to wait for
        def read():
            return stream.readline()

        def waiting():
            return True
    else:
        def read():
            return raw.readline().decode("utf-8", "replace")

        def waiting():
            return bool(select.select([raw], [], [], 0)[0])
    batch = []
    while True:
        line = read()
        if not line:
            break
        batch.append(line.rstrip("\r\n"))
        if len(batch) >= size or not waiting():
            yield batch
            batch = []
    if batch:
        yield batch


def cmd_ask(args) -> int:
    """The questions given, or else one a line from standard input (then one JSON object a line
    out, as with --json). Exit status 1 when a question could not be read."""
    device = _device(args.device)
    from_stdin = not args.question
    as_json = args.json or from_stdin
    # With JSON on standard output, what loading says goes to standard error.
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        kb = _load_kb(args.kb) if args.kb else None
        qa = checkpoint.load(args.model, kb, device)
        _set_entities(qa, args.entities)
    if args.no_word_check:
        qa.calibration = dataclasses.replace(qa.calibration, known_words=())
    if from_stdin and sys.stdin.isatty():
        print("kgqa ask: reading questions from standard input, one a line (end with Ctrl-D)", file=sys.stderr)
    unread = asked = 0
    for texts in _line_batches(sys.stdin, answers.BATCH_SIZE) if from_stdin else [args.question]:
        for r in qa.ask_many(texts, args.top, args.paths):
            asked += 1
            unread += r.error is not None
            print(json.dumps(r.to_dict()) if as_json else format_response(r), flush=True)
    if unread:
        print(f"kgqa ask: {unread} of {asked} questions could not be answered", file=sys.stderr)
    return 1 if unread else 0


def _write_questions(args, qs, kb) -> None:
    """The questions to --out, and their types, one a line, to --qtype-out if given."""
    write_generated(args.out, qs, kb, args.qtype_out or None)


def cmd_make_2entity(args) -> int:
    kb = _load_kb(args.kb)
    qs = two_entity.generate(kb, args.n, args.seed, hops=args.hops)
    if not qs:
        raise ValueError(f"--kb {args.kb}: no 2-entity question of {args.hops} hop{'s' if args.hops > 1 else ''} a "
                         f"branch can be made from it (no two facts whose intersection changes the answer)")
    _write_questions(args, qs, kb)
    print(f"wrote {len(qs)} 2-entity questions ({args.hops} hop{'s' if args.hops > 1 else ''} a branch) to {args.out}")
    return 0


def cmd_make_questions(args) -> int:
    kb = _load_kb(args.kb)
    qs = generate(kb, args.hops, args.n, args.seed, args.max_answers, args.two_entity, args.ops)
    if not qs:
        raise ValueError(f"--kb {args.kb}: no question of at most {args.max_answers} answers can be made from it "
                         f"(raise --max-answers?)")
    _write_questions(args, qs, kb)
    todo = kinds(args.hops, args.two_entity, args.ops)
    got = {k: sum(kind_of(q) == k for q in qs) for k in todo}
    print(f"wrote {len(qs)} questions to {args.out}: " + ", ".join(f"{k} {got[k]}" for k in todo))
    short = [f"{k} ({got[k]} of {share})" for k, share in zip(todo, shares(args.n, len(todo))) if got[k] < share]
    if short:
        print(f"the KB has fewer distinct questions (of at most {args.max_answers} answers) than their share of "
              f"--n {args.n}: {', '.join(short)}")
    if any(got.get(k) == 0 for k in ("argmax", "argmin")):
        print(f"no superlative question could be made: each needs a numeric attribute (a relation at least "
              f"{NUMERIC_MIN_SHARE:.0%} of whose facts lead to an entity named by a number) and a set with two "
              f"members whose values differ")
    return 0


def cmd_demo(args) -> int:
    """Trains on the embedded movie KB, prints Hits@1 and answers a few questions."""
    t0 = time.perf_counter()
    device = _device(args.device)
    out = args.out or DEMO_OUT  # the demo's own folder, replaced by every run; any other only with --force
    if args.out:
        _check_out(out, args.force)
    checkpoint.check_destination(out)
    kb = _load_kb(DEMO_DIR / "kb.txt")
    # The path questions and those with operations (counts, superlatives: kgqa.demo_data), in one model
    train_qs, valid_qs, test_qs = ([q for p in ("qa", "qa_ops")
                                    for q in _read(DEMO_DIR / f"{p}_{part}.txt", kb, DEMO_DIR / f"{p}_{part}_qtype.txt",
                                                   part)] for part in ("train", "valid", "test"))
    cfg = TrainConfig(hops=2, encoder=args.encoder, epochs=args.epochs, max_minutes=2.0, seed=0)
    qa = train(kb, train_qs, valid_qs, cfg, progress=not (args.no_progress or args.quiet), log=info, device=device)
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
        expected = [kb.entities[a] for a in q.answers] or [str(q.count)]
        print(f"  (expected: {', '.join(expected[:3])}{' ...' if len(expected) > 3 else ''})\n")
    print(f"model saved to {out}: try `python -m kgqa ask --model {out} \"who directed [{kb.entities[kb.triples[0, 0]]}]\"`")
    info(f"demo took {time.perf_counter() - t0:.0f} s")
    return 0


def _one_line_cache_warnings(command, show):
    """``warnings.showwarning`` printing a CacheWarning or a KBWarning as one line, ``kgqa
    <command>: warning: ...``; any other warning goes to ``show``."""

    def show_warning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, (CacheWarning, checkpoint.KBWarning)):
            print(f"kgqa {command}: warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    return show_warning


def build_parser() -> argparse.ArgumentParser:
    """`kgqa`'s arguments: one subparser per command, its ``fn`` the command's function."""
    ap = _Parser(prog="kgqa", description=__doc__)
    ap.add_argument("--version", action="version", version=f"%(prog)s {distribution.version()}",
                    help="print the version of kgqa-kernels and exit")
    sub = ap.add_subparsers(dest="command", required=True)
    device_help = ("where the model runs: cpu, cuda, cuda:N, or auto (cuda when torch sees a GPU, else cpu); under "
                   "torchrun, cuda is each rank's GPU LOCAL_RANK")

    t = sub.add_parser("train", help="train a model from question/answer pairs")
    t.add_argument("--kb", required=True, help="KB file: subject|relation|object (MetaQA kb.txt) or tab-separated")
    t.add_argument("--train", required=True, help="questions: question<TAB>answer1|answer2, topic entities in [brackets]")
    t.add_argument("--train-qtype", help="question types aligned with --train")
    t.add_argument("--extra-train", action="append", help="more training questions (repeatable)")
    t.add_argument("--valid", help="validation questions (default: --valid-fraction of --train)")
    t.add_argument("--valid-qtype", help="question types aligned with --valid")
    t.add_argument("--valid-fraction", type=FRACTION, default=policy.VALID_FRACTION,
                   help=f"without --valid: the share of --train held out for validation; 0: no validation, and "
                        f"none either when the share would be fewer than {policy.MIN_VALID} questions (too few to "
                        f"validate on): training then uses every question, runs all its epochs and keeps the "
                        f"last")
    t.add_argument("--hops", type=POSITIVE_INT, required=True, help="the most hops a question may take")
    t.add_argument("--out", type=writable_dir, required=True,
                   help="directory for model.safetensors and config.json; one that holds a model is replaced "
                        "only with --force")
    t.add_argument("--force", action="store_true", help="replace the model in --out")
    t.add_argument("--json", action="store_true",
                   help="print the final metrics as a JSON object on the last line: valid (the metrics), "
                        "train_minutes, epochs, best_epoch, out")
    t.add_argument("--encoder", default=DEFAULT_ENCODER,
                   help="transformers model name or path (frozen unless --finetune-encoder), or 'scratch'")
    t.add_argument("--finetune-encoder", action="store_true",
                   help="train the transformers encoder with the model (default: frozen, each question encoded "
                        "once); every batch then runs it forward and backward, which wants a GPU")
    t.add_argument("--encoder-lr", type=POSITIVE, default=TRAIN_DEFAULTS.encoder_lr,
                   help="the fine-tuned encoder's learning rate")
    t.add_argument("--epochs", type=POSITIVE_INT, default=TRAIN_DEFAULTS.epochs,
                   help=f"the most epochs (default: {policy.DEFAULT_EPOCHS}, or more on small data, so that training "
                        f"takes at least {policy.MIN_STEPS} optimiser steps)")
    t.add_argument("--batch-size", type=POSITIVE_INT, default=TRAIN_DEFAULTS.batch_size,
                   help="questions per optimiser step")
    t.add_argument("--lr", type=POSITIVE, default=TRAIN_DEFAULTS.lr,
                   help="the learning rate (AdamW) of the model, and of a scratch encoder")
    t.add_argument("--patience", type=POSITIVE_INT, default=TRAIN_DEFAULTS.patience,
                   help=f"stop after this many epochs without a better validation Hits@1 (default: "
                        f"{policy.PATIENCE_SHARE:g} of the epochs, at least {policy.MIN_PATIENCE}); the last of the "
                        f"best epochs is kept. Without validation, or on fewer than {policy.MIN_VALID} questions, "
                        f"training never stops early")
    t.add_argument("--max-minutes", type=POSITIVE, help="stop after the epoch that passes this")
    t.add_argument("--seed", type=SEED, default=TRAIN_DEFAULTS.seed,
                   help="seeds the initial weights, the shuffles and the validation split")
    t.add_argument("--threads", type=THREADS, help="CPU threads for torch (default: torch's own choice)")
    t.add_argument("--no-intersection", action="store_true", help="one branch seeded with every topic entity")
    t.add_argument("--entities", choices=("gold", "learned"), default=TRAIN_DEFAULTS.entities,
                   help="gold: the [bracketed] topic entities; learned: the model finds them (brackets stripped)")
    t.add_argument("--retrieval", choices=RETRIEVALS, default=TRAIN_DEFAULTS.retrieval,
                   help="learned entities' candidates: alias, the alias index's name matches (fuzzy ones only when "
                        "no span matches exactly); policy, drawn from several generators (alias, fuzzy, lexical, "
                        "dense, memory) by a bandit that learns from the training questions how many to draw from "
                        "each, at most --budget a span")
    t.add_argument("--budget", type=BUDGET, default=TRAIN_DEFAULTS.budget,
                   help=f"--retrieval policy: candidates a span, across the generators "
                        f"(default {TRAIN_DEFAULTS.budget})")
    t.add_argument("--mention-noise", type=SHARE, default=TRAIN_DEFAULTS.mention_noise, metavar="SHARE",
                   help="learned entities: this share of the training questions also trains as a copy with its "
                        "[mention] written as users write names (lower case, no accents or punctuation, a typo, "
                        "dropped words, initials, another word order), so that misspelt names are found and "
                        "chosen (default 0: none)")
    t.add_argument("--mention-noise-kinds", type=noise_kinds, metavar="KIND,KIND",
                   help=f"--mention-noise: only these kinds ({', '.join(MENTION_NOISE_KINDS)}; default all)")
    t.add_argument("--relation-head", choices=RELATION_HEADS, default=TRAIN_DEFAULTS.relation_head,
                   help="names: relations scored by their names' words, read by the encoder (a relation seldom or "
                        "never seen in training can be chosen); ids: a classifier over relation ids")
    t.add_argument("--no-topic-types", action="store_true",
                   help="the question vector without the relations its topic entities have facts of (as models "
                        "before topic_types)")
    t.add_argument("--restrict-hops", choices=RESTRICT_HOPS_MODES, default=TRAIN_DEFAULTS.restrict_hops,
                   help="gold entities: every hop only over the relations its topic entity or the set before it has "
                        "facts of: auto (with operations), on, off")
    t.add_argument("--operations", choices=OPERATIONS_MODES, default=TRAIN_DEFAULTS.operations,
                   help="count and superlatives (argmax, argmin over the KB's numeric attributes) besides paths, "
                        "the operation learned per question from the answers: auto (when a training answer is a "
                        "count, a numeral no entity is named), on, off")
    t.add_argument("--skip-bad-lines", action="store_true",
                   help="skip malformed KB lines and lines that are not UTF-8 (counted) instead of failing")
    t.add_argument("--no-progress", action="store_true", help="no progress bar (the line per epoch stays)")
    t.add_argument("--no-word-check", action="store_true", help=NO_WORD_CHECK_HELP)
    t.add_argument("--copy-kb", action=argparse.BooleanOptionalAction, default=None,
                   help=f"carry a copy of the KB in --out (kb.txt), so that the model directory works alone "
                        f"(default: when the KB has at most {COPY_KB_MAX_FACTS:,} facts)")
    t.add_argument("--device", default="auto", help=device_help)
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("eval", help="Hits@1, Hits@5, answer-set F1 with the model's calibration, abstentions and "
                                    "Hits@1 against coverage (per question type with --qtype)")
    e.add_argument("--model", required=True, help="the model's directory (the --out of kgqa train)")
    e.add_argument("--questions", required=True, help="questions with their answers, as --train of kgqa train")
    e.add_argument("--qtype", help="question types aligned with --questions: the metrics per type too")
    e.add_argument("--kb", help="the KB, if it moved since training")
    e.add_argument("--no-intersection", action="store_true",
                   help="one branch seeded with every topic entity, whatever the model was trained with")
    e.add_argument("--entities", choices=("gold", "learned"), help="default: as trained")
    e.add_argument("--no-word-check", action="store_true", help=NO_WORD_CHECK_HELP)
    e.add_argument("--follow-each", type=COUNT, metavar="N",
                   help="learned entities: the first branch followed from each of its N most likely (span, "
                        "entity) pairs alone, the paths mixed by their probabilities; 0: from their soft "
                        "mixture (default: as trained)")
    e.add_argument("--json", action="store_true", help="print the metrics as a JSON object on the last line")
    e.add_argument("--device", default="auto", help=device_help)
    e.set_defaults(fn=cmd_eval)

    a = sub.add_parser("ask", help="answer questions, each answer with the KB paths that carry its score")
    a.add_argument("--model", required=True, help="the model's directory (the --out of kgqa train)")
    a.add_argument("--kb", help="the KB, if it moved since training")
    a.add_argument("--top", type=POSITIVE_INT, default=5,
                   help="the most answers a question (fewer where the model stands behind fewer)")
    a.add_argument("--paths", type=COUNT, default=3,
                   help="evidence paths shown per answer and topic entity, largest share first")
    a.add_argument("--json", action="store_true",
                   help="one JSON object a line per question: question, answers (entity, score, evidence), "
                        "abstained, error, ...")
    a.add_argument("--entities", choices=("gold", "learned"), help="default: as trained")
    a.add_argument("--no-word-check", action="store_true", help=NO_WORD_CHECK_HELP)
    a.add_argument("--device", default="auto", help=device_help)
    a.add_argument("question", nargs="*",
                   help="questions, topic entities in [brackets]; none: read one a line from standard input and "
                        "print one JSON object a line (exit status 1 if any could not be read)")
    a.set_defaults(fn=cmd_ask)

    m = sub.add_parser("make-2entity", help="derive 2-entity (intersection) questions from a KB")
    m.add_argument("--kb", required=True, help="KB file: subject|relation|object (MetaQA kb.txt) or tab-separated")
    m.add_argument("--out", type=writable_file, required=True, help="the question file to write")
    m.add_argument("--qtype-out", type=writable_file, help="also write each question's type to this file")
    m.add_argument("--n", type=POSITIVE_INT, default=2000, help="how many questions")
    m.add_argument("--seed", type=SEED, default=0, help="seeds the choice of questions")
    m.add_argument("--hops", type=int, choices=(1, 2), default=1,
                   help="hops a branch: 1 'which movies starred [A] and were directed by [B]', "
                        "2 'which actors appeared in films directed by [A] and in films written by [B]'")
    m.set_defaults(fn=cmd_make_2entity)

    g = sub.add_parser("make-questions", help="generate training questions for a KB that has none, phrased from "
                                              "its relation names")
    g.add_argument("--kb", required=True, help="KB file: subject|relation|object (MetaQA kb.txt) or tab-separated")
    g.add_argument("--hops", type=int, choices=range(1, QUESTIONS_MAX_HOPS + 1), required=True, metavar="N",
                   help=f"questions of every hop count from 1 to N (at most {QUESTIONS_MAX_HOPS}), in equal shares; "
                        f"train with the same --hops")
    g.add_argument("--out", type=writable_file, required=True,
                   help="the questions, in the format `kgqa train --train` reads: question<TAB>answer1|answer2, "
                        "topic entities in [brackets]")
    g.add_argument("--n", type=POSITIVE_INT, default=QUESTIONS_DEFAULT_N, metavar="COUNT",
                   help=f"how many questions, shared equally among the kinds (fewer where the KB has too few "
                        f"distinct ones) ")
    g.add_argument("--seed", type=SEED, default=0, help="the same seed gives the same questions")
    g.add_argument("--ops", type=question_ops, metavar="OP,OP",
                   help=f"the operations to ask, comma-separated, of {', '.join(QUESTION_OPS)}: path (1 to N hops), "
                        f"2-entity (as --two-entity), count ('how many films directed by [X] are there', and of "
                        f"two entities together; the answer is the numeral), argmax, argmin ('what is the most recent "
                        f"film starring [X]', over a numeric attribute: a relation at least "
                        f"{NUMERIC_MIN_SHARE:.0%}% of whose facts lead to a number) (default: path)")
    g.add_argument("--two-entity", action="store_true",
                   help="also 2-entity questions, both entities in brackets: one hop from each ('who reports to "
                        "[A] and works in [B]'), and with --hops 2 or 3 two hops from each (default: off); the same "
                        "as adding 2-entity to --ops")
    g.add_argument("--max-answers", type=POSITIVE_INT, default=QUESTIONS_MAX_ANSWERS,
                   help=f"skip questions with more answers than this")
    g.add_argument("--qtype-out", type=writable_file,
                   help="also write each question's type, one a line ('2hop:works_in>located_in'; count, "
                        "count-2entity, argmax, argmin alone), for --train-qtype (default: none)")
    g.set_defaults(fn=cmd_make_questions)

    d = sub.add_parser("demo", help="train on the embedded movie KB and answer a few questions")
    d.add_argument("--encoder", default=DEFAULT_ENCODER, help="as --encoder of kgqa train")
    d.add_argument("--epochs", type=POSITIVE_INT, default=30, help="the most passes over the training questions")
    d.add_argument("--out", type=writable_dir,
                   help=f"where the model goes (default: {DEMO_OUT}, replaced by every run); a folder that "
                        f"holds a model is replaced only with --force")
    d.add_argument("--force", action="store_true", help="replace the model in --out")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.add_argument("--device", default="auto", help=device_help)
    d.set_defaults(fn=cmd_demo)

    for command in sub.choices.values():  # every command's, after its own
        _add_common_options(command)
    return ap


def main(argv=None) -> int:
    missing = distribution.missing()  # first: even --help needs the qa extra's packages
    if missing:
        print(f"kgqa: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed; the kgqa command "
              f"needs the {distribution.EXTRA} extra: {distribution.INSTALL_HINT}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings(), _quiet(args.quiet):
        try:
            _import_model_layer()
            warnings.showwarning = _one_line_cache_warnings(args.command, warnings.showwarning)
            status = args.fn(args)
            sys.stdout.flush()  # a reader that left shows here, in the handler below, not at exit
            return status
        except BrokenPipeError:
            # The reader left (`kgqa eval ... | head -1`): no message, and none when Python flushes
            # standard output at exit either.
            with contextlib.suppress(OSError, ValueError):  # ValueError: a standard output with no file
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
            return 141  # 128 + SIGPIPE: what a shell reports for a command a closed pipe stopped
        except KeyboardInterrupt:
            print(f"kgqa {args.command}: interrupted", file=sys.stderr)
            return 130  # 128 + SIGINT
        except (OSError, ValueError, ImportError) as err:  # OSError: a file that cannot be read or written
            print(f"kgqa {args.command}: {err}", file=sys.stderr)
            return 2


def _add_common_options(parser) -> None:
    """The options every command takes."""
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print only results and errors: no progress bars, no lines about what was read "
                             "or about each epoch")


if __name__ == "__main__":
    sys.exit(main())
