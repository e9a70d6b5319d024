"""Answer sets and abstention on MetaQA (docs/results.md "Answer sets and abstention").

Per hop count N: MetaQA's N-hop/qa_dev.txt shuffled (seed 0) and cut into test (10%), valid (10%)
and train (80%) files; `kgqa train --valid` on train and valid (gold entities, the default encoder,
--max-minutes 8 --threads 1); then, on the SAME trained model, the test questions scored
- by the old rule (Calibration(): score >= 0.5, else the top one; no abstention, no types),
- by a calibration fitted on valid without the type restriction (TYPE_RATIOS = (0,)),
- by the calibration `kgqa train` fits (kgqa.calibration.fit on valid, with the training
  questions' words): what the checkpoint stores and `kgqa eval` uses.
It prints one table row per rule (Hits@1, answer-set F1, answered share and its precision,
precision at 90% coverage), the calibration error of the scores against the probabilities, and
Hits@1 against coverage with the questions ranked by the top probability and by the
relation-path confidence.

Usage: python experiments/answer_sets.py METAQA_DIR [--out DIR] [--hops 1 2 3] [--skip-train] [--suffix S]
       (DIR default: runs/experiments/answer_sets; --skip-train scores the models already in DIR,
       DIR/metaqa-Nhop or with --suffix DIR/metaqa-Nhop-S)
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kgqa import calibration, checkpoint, read_questions  # noqa: E402
from kgqa.batching import batches  # noqa: E402
from kgqa.calibration import SCORE_FLOOR, Calibration, confidence  # noqa: E402
from kgqa.metrics import precision_at_coverage  # noqa: E402


def split(metaqa: Path, out: Path, n: int) -> Path:
    """out/Nhop/{train,valid,test}.txt and their _qtype.txt files (seed 0: 10% test, 10% valid)."""
    d = out / f"{n}hop"
    if (d / "test.txt").exists():
        return d
    qs = (metaqa / f"{n}-hop" / "qa_dev.txt").read_text(encoding="utf-8").splitlines()
    ts = (metaqa / f"{n}-hop" / "qa_dev_qtype.txt").read_text(encoding="utf-8").splitlines()
    assert len(qs) == len(ts), "qa_dev.txt and qa_dev_qtype.txt differ in length"
    idx = list(range(len(qs)))
    random.Random(0).shuffle(idx)
    k = len(idx) // 10
    d.mkdir(parents=True, exist_ok=True)
    for name, ids in (("test", idx[:k]), ("valid", idx[k:2 * k]), ("train", idx[2 * k:])):
        (d / f"{name}.txt").write_text("".join(qs[i] + "\n" for i in ids), encoding="utf-8")
        (d / f"{name}_qtype.txt").write_text("".join(ts[i] + "\n" for i in ids), encoding="utf-8")
    return d


def train(metaqa: Path, d: Path, model: Path, n: int, minutes: float, threads: int) -> None:
    cmd = [sys.executable, "-m", "kgqa", "train", "--kb", str(metaqa / "kb.txt"), "--train", str(d / "train.txt"),
           "--train-qtype", str(d / "train_qtype.txt"), "--valid", str(d / "valid.txt"),
           "--valid-qtype", str(d / "valid_qtype.txt"), "--hops", str(n), "--out", str(model),
           "--max-minutes", str(minutes), "--threads", str(threads), "--no-progress"]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def diagnostics(qa, questions, cal: Calibration) -> dict:
    """With ``cal``, over the test questions: (1) over their candidate entities (raw score >=
    SCORE_FLOOR), the expected calibration error (10 equal-width bins) and the Brier score of the
    raw scores and of the calibration's probabilities, as estimates of P(the entity is an
    answer); (2) Hits@1 against coverage when the questions are ranked by the top entity's
    probability and by the relation-path confidence (the one abstention reads)."""
    qa.calibration = cal
    s_all, p_all, y_all, top_p, path, right = [], [], [], [], [], []
    for batch in batches(questions, 256, True, shuffle=False):
        scores, out = qa.predict(batch, calibrated=False)
        scores = cal.restrict(scores, out.relations, out.hop_attention, qa.sparse)
        probs = cal.probability(scores)
        top_p += probs.amax(1).clamp(min=0).tolist()
        path += confidence(out.relations, out.hop_attention).tolist()
        top = scores.topk(min(5, scores.shape[1]), dim=1).indices[:, 0]  # as QA.evaluate (Hits@5) breaks ties
        right += [float(int(e) in q.answers) for e, q in zip(top, batch)]
        for b, q in enumerate(batch):
            keep = scores[b] >= SCORE_FLOOR
            y = torch.zeros(scores.shape[1], dtype=torch.bool)
            y[q.answers] = True
            s_all.append(scores[b][keep].double())
            p_all.append(probs[b][keep].double())
            y_all.append(y[keep].double())
    s, p, y = torch.cat(s_all), torch.cat(p_all), torch.cat(y_all)

    def ece(v):
        bins = torch.clamp((v * 10).long(), max=9)
        return float(sum((y[bins == i].mean() - v[bins == i].mean()).abs() * (bins == i).sum()
                         for i in range(10) if (bins == i).any()) / len(v))

    return {"candidates": len(s), "ece_raw": ece(s), "ece_calibrated": ece(p),
            "brier_raw": float(((s - y) ** 2).mean()), "brier_calibrated": float(((p - y) ** 2).mean()),
            "coverage_by_top_probability": precision_at_coverage(top_p, right),
            "coverage_by_path_confidence": precision_at_coverage(path, right)}


def score(model: Path, d: Path) -> dict:
    qa = checkpoint.load(model)
    train_qs, _ = read_questions(d / "train.txt", qa.kb)
    valid_qs, _ = read_questions(d / "valid.txt", qa.kb)
    test_qs, _ = read_questions(d / "test.txt", qa.kb, d / "test_qtype.txt")
    stored = "calibration" in (qa.config or {})
    t0 = time.perf_counter()
    fitted = calibration.fit(qa, valid_qs, train_qs, log=print)  # what `kgqa train` stores
    fit_s = time.perf_counter() - t0
    if stored and qa.calibration != fitted:
        print(f"note: the checkpoint's calibration differs from the refit: {qa.calibration} vs {fitted}")
    ratios = calibration.TYPE_RATIOS
    calibration.TYPE_RATIOS = (0.0,)
    try:
        untyped = calibration.fit(qa, valid_qs, train_qs)
    finally:
        calibration.TYPE_RATIOS = ratios
    rows = {}
    for name, cal in (("old rule (0.5)", Calibration()), ("calibrated, no types", untyped), ("calibrated", fitted)):
        qa.calibration = cal
        r = qa.evaluate(test_qs)
        r.pop("per_qtype", None)
        rows[name] = r
    raw = float(torch.sigmoid((torch.logit(torch.tensor(fitted.answer_threshold, dtype=torch.float64)) - fitted.bias)
                              / fitted.slope))  # the answer threshold on the raw scores
    return {"n_test": len(test_qs), "n_valid": len(valid_qs), "fit_seconds": fit_s, "calibration": fitted.describe(),
            "raw_answer_threshold": raw, "rules": rows, "diagnostics": diagnostics(qa, test_qs, fitted),
            "minutes": (qa.config or {}).get("train_minutes"), "epochs": len(qa.cfg.history)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("metaqa", type=Path)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "experiments" / "answer_sets")
    ap.add_argument("--hops", type=int, nargs="+", default=[1, 2, 3], choices=(1, 2, 3))
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--max-minutes", type=float, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--suffix", default="", help="score (or train) the models DIR/metaqa-Nhop-SUFFIX instead")
    args = ap.parse_args(argv)
    if not (args.metaqa / "kb.txt").is_file():
        ap.error(f"{args.metaqa}/kb.txt not found: pass the folder that holds MetaQA's kb.txt and N-hop/qa_dev.txt")
    torch.set_num_threads(args.threads)
    results = {}
    for n in args.hops:
        d = split(args.metaqa, args.out / "data", n)
        model = args.out / (f"metaqa-{n}hop" + (f"-{args.suffix}" if args.suffix else ""))
        if not args.skip_train:
            train(args.metaqa, d, model, n, args.max_minutes, args.threads)
        results[n] = score(model, d)
        print(json.dumps(results[n]), flush=True)
    print("\n| hops | rule | Hits@1 | answer-set F1 | answered | precision of the answered | precision at 90% coverage |")
    print("|---|---|---|---|---|---|---|")
    for n, res in results.items():
        for name, r in res["rules"].items():
            print(f"| {n} | {name} | {100 * r['hits@1']:.2f} | {r['f1']:.4f} | {100 * r['answered']:.1f}% | "
                  f"{100 * r['answered_hits@1']:.2f} | {100 * r['precision_at_coverage']['0.9']:.2f} |")
    print("\n| hops | test candidates | ECE raw | ECE calibrated | Brier raw | Brier calibrated |")
    print("|---|---|---|---|---|---|")
    for n, res in results.items():
        e = res["diagnostics"]
        print(f"| {n} | {e['candidates']} | {e['ece_raw']:.4f} | {e['ece_calibrated']:.4f} | {e['brier_raw']:.4f} | "
              f"{e['brier_calibrated']:.4f} |")
    print("\n| hops | Hits@1 of the most confident ... by | 50% | 80% | 90% | 100% |")
    print("|---|---|---|---|---|---|")
    for n, res in results.items():
        for by in ("top_probability", "path_confidence"):
            c = res["diagnostics"][f"coverage_by_{by}"]
            print(f"| {n} | {by.replace('_', ' ')} | " + " | ".join(f"{100 * c[k]:.2f}" for k in ("0.5", "0.8", "0.9", "1"))
                  + " |")
    for n, res in results.items():
        print(f"{n} hops: {res['calibration']}; on the raw scores, answers at >= {res['raw_answer_threshold']:.4f} "
              f"(fitted in {res['fit_seconds']:.1f} s; model: {res['epochs']} epochs)")
    (args.out / f"results{'-' + args.suffix if args.suffix else ''}-{'-'.join(map(str, args.hops))}.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
