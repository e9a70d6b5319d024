"""No answer for what the KB does not hold, on the demo KB (docs/results.md "Answer sets and
abstention"). Trains a model on the demo's training questions (validation: qa_valid.txt, as
`kgqa demo` does), for the scratch encoder and the default one, then asks
- the demo's test questions (templated like the training ones),
- questions about what the KB does not hold (budgets, producers, birthdays: no relation for them),
- paraphrases, written by hand, of questions it does hold (the cost of refusing unseen words),
under the old rule (Calibration(): >= 0.5, else the top one), the fitted calibration without its
word check, and the fitted calibration (what `kgqa train` stores). Prints how many of each it
answers, and how many of the answered paraphrases have the right top answer.

Usage: python experiments/demo_abstention.py [--encoders scratch all-MiniLM-L6-v2] [--epochs 30]
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kgqa import KnowledgeBase, TrainConfig, cli, read_questions, train  # noqa: E402
from kgqa.calibration import Calibration  # noqa: E402
from kgqa.questions import Question, parse_question  # noqa: E402

DEMO = Path(cli.DEMO_DIR)
FILM, PERSON, ACTOR = "The Electric Harbor", "Pablo Jensen", "Lena Moreau"
NOT_IN_KB = [  # the demo KB has directors, writers, actors, years, genres and languages only
    f"what is the budget of [{FILM}]", f"how much did [{FILM}] cost", f"who produced [{FILM}]",
    f"what awards did [{FILM}] win", f"where was [{FILM}] filmed", f"what is the box office of [{FILM}]",
    f"who composed the music for [{FILM}]", f"how long is [{FILM}]", f"what is the rating of [{FILM}]",
    f"how tall is [{PERSON}]", f"when was [{PERSON}] born", f"who is the spouse of [{PERSON}]",
    f"where does [{ACTOR}] live", f"how old is [{ACTOR}]", f"what nationality is [{ACTOR}]",
]
# (question, relation path from the bracketed entity): the answers are read from the KB
PARAPHRASES = [
    (f"who was the director of [{FILM}]", ["directed_by"]), (f"who made [{FILM}]", ["directed_by"]),
    (f"which movies has [{PERSON}] directed", ["directed_by~inv"]),
    (f"who wrote the screenplay of [{FILM}]", ["written_by"]), (f"who are the writers of [{FILM}]", ["written_by"]),
    (f"who acted in [{FILM}]", ["starred_actors"]), (f"name the actors of [{FILM}]", ["starred_actors"]),
    (f"which films feature [{ACTOR}]", ["starred_actors~inv"]),
    (f"in which year did [{FILM}] come out", ["release_year"]), (f"when did [{FILM}] come out", ["release_year"]),
    (f"what genre is [{FILM}]", ["has_genre"]), (f"what is the genre of [{FILM}]", ["has_genre"]),
    (f"what language is spoken in [{FILM}]", ["in_language"]), (f"in what language is [{FILM}]", ["in_language"]),
    (f"who directed the films [{ACTOR}] acted in", ["starred_actors~inv", "directed_by"]),
]


def answers(kb: KnowledgeBase, start: int, path) -> list:
    """The entities ``path`` (relation names, ``~inv`` for the inverse) reaches from ``start``."""
    facts = [(s, kb.base_relations[p], o) for s, p, o in kb.triples.tolist()]
    here = {start}
    for rel in path:
        inverse = rel.endswith("~inv")
        name = rel[: -len("~inv")] if inverse else rel
        here = {s if inverse else o for s, r, o in facts if r == name and (o if inverse else s) in here}
    assert here, (kb.entities[start], path)
    return sorted(here - {start})


def asked(qa, questions, cal):
    qa.calibration = cal
    scores, _ = qa.predict(questions)
    return cal.select(scores)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoders", nargs="+", default=["scratch", "all-MiniLM-L6-v2"])
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    kb = KnowledgeBase.load(DEMO / "kb.txt", use_cache=False)
    train_qs, _ = read_questions(DEMO / "qa_train.txt", kb, DEMO / "qa_train_qtype.txt")
    valid_qs, _ = read_questions(DEMO / "qa_valid.txt", kb, DEMO / "qa_valid_qtype.txt")
    test_qs, _ = read_questions(DEMO / "qa_test.txt", kb, DEMO / "qa_test_qtype.txt")
    lacking = [Question(t, parse_question(t, kb), []) for t in NOT_IN_KB]
    para = []
    for text, path in PARAPHRASES:
        topics = parse_question(text, kb)
        para.append(Question(text, topics, answers(kb, topics[0], path)))
    print("| encoder | rule | test Hits@1 | test F1 | test answered | not in the KB: answered | paraphrases: answered | "
          "paraphrases: right top answer of the answered |")
    print("|---|---|---|---|---|---|---|---|")
    for enc in args.encoders:
        cfg = TrainConfig(hops=2, encoder=enc, epochs=args.epochs, max_minutes=2.0, seed=0)
        qa = train(kb, train_qs, valid_qs, cfg, progress=False, log=lambda s: None)
        fitted = qa.calibration
        for name, cal in (("old rule (0.5)", Calibration()), ("calibrated, no word check", replace(fitted, known_words=())),
                          ("calibrated", fitted)):
            qa.calibration = cal
            r = qa.evaluate(test_qs)
            no = asked(qa, lacking, cal)
            pa = asked(qa, para, cal)
            right = sum(ids[0] in q.answers for ids, q in zip(pa, para) if ids)
            n_pa = sum(bool(ids) for ids in pa)
            print(f"| {enc} | {name} | {100 * r['hits@1']:.2f} | {r['f1']:.4f} | {100 * r['answered']:.1f}% | "
                  f"{sum(bool(ids) for ids in no)} of {len(no)} | {n_pa} of {len(pa)} | {right} of {n_pa} |", flush=True)
        qa.calibration = fitted
        print(f"({enc}: {fitted.describe()}; {len(cfg.history)} epochs)")
        for q in para:
            unknown = qa.unknown_words(q.text)
            if unknown:
                print(f"  refused paraphrase: {q.text!r}: {unknown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
