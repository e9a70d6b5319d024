"""Where a saved learned-entities model misses bracketed questions (issue 21's 2-entity families,
docs/results.md "Learned entities restricted where gold ones are"): Hits@1 and linking accuracy as
`kgqa eval` computes them, then the questions by how their linked entities compare with the
brackets ("right", "one of two", "partly", "none") and whether the top answer is right, with a few
examples of each; with intersection, the Hits@1 of each path alone (the first branch, the pair)
the spread of the gate P(two entities) that mixes them, and which path its training label calls
better on these questions (the share of each path's mass on the answers, and the answer sets' F1,
the label before). ``--restrict-learned on|off`` scores the same weights with the model's
``restrict_learned`` switched (default: as trained), which is how the effect of the restriction at
inference alone was measured.

    python experiments/learned_link_diag.py MODEL_DIR QUESTIONS [--restrict-learned on|off] [--examples 4]
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kgqa import checkpoint, read_questions  # noqa: E402
from kgqa.batching import batches  # noqa: E402
from kgqa.loss import answer_share  # noqa: E402
from kgqa.metrics import set_f1  # noqa: E402


def kind(linked, gold) -> str:
    if sorted(linked) == sorted(gold):
        return "right"
    if len(linked) == 1 and linked[0] in gold:
        return "one of two"
    return "partly" if set(linked) & set(gold) else "none"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("questions", type=Path, help="questions with [brackets] (only to score the linking)")
    ap.add_argument("--restrict-learned", choices=("on", "off"))
    ap.add_argument("--examples", type=int, default=4)
    args = ap.parse_args(argv)
    qa = checkpoint.load(args.model, None, torch.device("cpu"))
    if not qa.learned:
        raise SystemExit(f"{args.model}: a model with gold entities; this looks at learned ones")
    if args.restrict_learned:
        qa.model.restrict_learned = args.restrict_learned == "on"
    qs, _ = read_questions(args.questions, qa.kb, None, require_topics=False, max_topics=qa.max_topics)
    metrics = qa.evaluate(qs)
    table, examples, paths, gate, labels = Counter(), defaultdict(list), Counter(), [], defaultdict(Counter)
    with torch.no_grad():
        for batch in batches(qs, 256, False, shuffle=False):
            scores, out = qa.predict(batch, calibrated=False)
            for q, top, linked in zip(batch, scores.argmax(1).tolist(), out.topics):
                key = f"{kind(linked, q.topics)}, {'hit' if top in q.answers else 'miss'}"
                table[key] += 1
                if len(examples[key]) < args.examples:
                    examples[key].append(f"{q.text}  ->  {[qa.kb.entities[e] for e in linked]}")
            if out.parts is not None:  # intersection: each path's own top answer, and the gate mixing them
                gate += out.resolution.two.view(-1).tolist()
                for name, part in zip(("first branch alone", "pair"), out.parts):
                    tops = part.masked_fill(out.exclude, float("-inf")).argmax(1).tolist()
                    paths[name] += sum(t in q.answers for q, t in zip(batch, tops))
                # which path the gate's label calls better: answer_share (its label), and the answer
                # sets' F1 at F1_THRESHOLD (the label before commit 9b7b3f8)
                answers = torch.zeros(len(batch), qa.kb.num_entities)
                for i, q in enumerate(batch):
                    answers[i, q.answers] = 1.0
                for rule, value in (("share", lambda p: answer_share(p, answers, out.exclude)),
                                    ("F1", lambda p: set_f1(p.masked_fill(out.exclude, float("-inf")), answers))):
                    a, b = (value(p) for p in out.parts)
                    labels[rule].update(["pair" if y > x else "first branch alone" if y < x else "tie"
                                         for x, y in zip(a.tolist(), b.tolist())])
    print(json.dumps({"restrict_learned": qa.model.restrict_learned, "n": metrics["n"],
                      "hits@1": round(100 * metrics["hits@1"], 2),
                      "linking_accuracy": round(100 * metrics.get("linking_accuracy", 0.0), 2),
                      "linked vs brackets, top answer": dict(table.most_common()),
                      **({"hits@1 of each path alone": {k: round(100 * v / len(qs), 2) for k, v in paths.items()},
                          "P(two entities), quantiles 0.1 0.25 0.5 0.75 0.9":
                              [round(x, 3) for x in torch.tensor(gate).quantile(
                                  torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9])).tolist()],
                          "the better path by the gate's label": {k: dict(v) for k, v in labels.items()}}
                         if gate else {}),
                      "examples": examples}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
