"""The embedded demo: a small movie KB in MetaQA's format and questions over it (1-hop, 2-hop and
2-entity intersections), generated deterministically from a seed. ``python -m kgqa.demo_data DIR``
rewrites the files shipped in kgqa/data/demo.

Questions with operations (issue 20: counts, and superlatives over the release year) are in files
of their own, qa_ops_{train,valid,test}.txt with their qtype files, so that the path questions and
the models trained on them alone (the tests' fixtures) stay as they were; `kgqa demo` trains on
both."""
from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

ADJ = ["Silent", "Crimson", "Last", "Hidden", "Broken", "Golden", "Lonely", "Dark", "Bright", "Frozen", "Wild", "Lost",
       "Secret", "Burning", "Quiet", "Endless", "Distant", "Fallen", "Savage", "Gentle", "Electric", "Midnight"]
NOUN = ["River", "Empire", "Garden", "Horizon", "Promise", "Storm", "Harbor", "Kingdom", "Mirror", "Journey", "Island",
        "Letter", "Winter", "Station", "Shadow", "Orchard", "Frontier", "Symphony", "Voyage", "Lantern", "Canyon", "Tide"]
FIRST = ["Ada", "Ben", "Clara", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kira", "Luca", "Maya",
         "Nils", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wes", "Yara", "Zane", "Lena", "Omar"]
LAST = ["Abbott", "Brandt", "Castillo", "Dufour", "Eriksen", "Fischer", "Gallo", "Hale", "Ivanova", "Jensen", "Kowalski",
        "Lindqvist", "Moreau", "Nakamura", "Okafor", "Petrov", "Quint", "Rossi", "Sato", "Tanaka", "Ueda", "Varga", "Weber"]
GENRES = ["Drama", "Comedy", "Thriller", "Western", "Horror", "Romance", "Documentary", "Animation", "Mystery", "Sci-Fi"]
LANGUAGES = ["English", "French", "Japanese", "Spanish", "German", "Italian", "Korean", "Swedish"]

ONE_HOP = {  # (relation, direction) -> phrasings; "fwd": from movie, "inv": to movie
    ("directed_by", "fwd"): ["who directed [{}]", "who is the director of [{}]", "[{}] was directed by who"],
    ("directed_by", "inv"): ["what movies did [{}] direct", "which films were directed by [{}]", "[{}] directed which movies"],
    ("written_by", "fwd"): ["who wrote [{}]", "who is the writer of [{}]", "[{}] was written by who"],
    ("written_by", "inv"): ["what films did [{}] write", "which movies were written by [{}]"],
    ("starred_actors", "fwd"): ["who acted in [{}]", "who starred in [{}]", "which actors appear in [{}]"],
    ("starred_actors", "inv"): ["what movies did [{}] act in", "which films star [{}]", "[{}] appears in which movies"],
    ("release_year", "fwd"): ["when was [{}] released", "what year did [{}] come out"],
    ("has_genre", "fwd"): ["what genre is [{}]", "what kind of film is [{}]"],
    ("in_language", "fwd"): ["what language is [{}] in", "which language is [{}] spoken in"],
}
TWO_HOP = {  # (rel1, dir1, rel2, dir2) -> phrasings
    ("starred_actors", "inv", "directed_by", "fwd"): ["who directed the movies that [{}] acted in",
                                                     "the films starring [{}] were directed by who"],
    ("directed_by", "inv", "starred_actors", "fwd"): ["who starred in films directed by [{}]",
                                                     "which actors appear in movies by [{}]"],
    ("starred_actors", "inv", "starred_actors", "fwd"): ["who acted together with [{}]", "who are the co-stars of [{}]"],
    ("written_by", "inv", "has_genre", "fwd"): ["what genres are the films written by [{}]",
                                              "what kind of films did [{}] write"],
    ("starred_actors", "inv", "release_year", "fwd"): ["when did the movies starring [{}] come out",
                                                      "in which years were films with [{}] released"],
    ("directed_by", "fwd", "directed_by", "inv"): ["what other films did the director of [{}] make",
                                                  "which movies share a director with [{}]"],
}
INTERSECT = {  # (rel of A, rel of B) -> phrasings; both branches lead to movies
    ("starred_actors", "directed_by"): ["which movies starred [{a}] and were directed by [{b}]",
                                        "what films did [{b}] direct that [{a}] acted in"],
    ("starred_actors", "written_by"): ["which films written by [{b}] star [{a}]",
                                       "what movies with [{a}] were written by [{b}]"],
    ("starred_actors", "starred_actors"): ["which movies feature both [{a}] and [{b}]",
                                           "what films did [{a}] and [{b}] act in together"],
}


def build(seed: int = 0, movies: int = 300):
    rng = random.Random(seed)
    titles = sorted({f"The {a} {n}" for a in ADJ for n in NOUN})
    rng.shuffle(titles)
    names = sorted({f"{f} {l}" for f in FIRST for l in LAST})
    rng.shuffle(names)
    titles = titles[:movies]
    actors, directors, writers = names[:220], names[220:290], names[290:360]
    facts: List[Tuple[str, str, str]] = []
    rel: Dict[Tuple[str, str], Dict[str, Set[str]]] = {}

    def add(s, r, o):
        facts.append((s, r, o))
        rel.setdefault((r, "fwd"), {}).setdefault(s, set()).add(o)
        rel.setdefault((r, "inv"), {}).setdefault(o, set()).add(s)

    for t in titles:
        add(t, "directed_by", rng.choice(directors))
        for w in rng.sample(writers, rng.randint(1, 2)):
            add(t, "written_by", w)
        for a in rng.sample(actors, rng.randint(2, 4)):
            add(t, "starred_actors", a)
        add(t, "release_year", str(rng.randint(1960, 2020)))
        add(t, "has_genre", rng.choice(GENRES))
        add(t, "in_language", rng.choice(LANGUAGES))

    def follow(ents, r, d):
        return set().union(*(rel.get((r, d), {}).get(e, set()) for e in ents)) if ents else set()

    questions = []  # (text, answers, qtype)
    for (r, d), phrasings in ONE_HOP.items():
        for topic in sorted(rel[(r, d)]):
            text = rng.choice(phrasings).format(topic)
            questions.append((text, sorted(rel[(r, d)][topic]), f"1hop:{r}_{d}"))
    for (r1, d1, r2, d2), phrasings in TWO_HOP.items():
        for topic in sorted(rel[(r1, d1)]):
            answers = follow(rel[(r1, d1)][topic], r2, d2) - {topic}
            if answers:
                questions.append((rng.choice(phrasings).format(topic), sorted(answers), f"2hop:{r1}_{d1}-{r2}_{d2}"))
    for (ra, rb), phrasings in INTERSECT.items():
        for t in titles:
            a_choices, b_choices = sorted(rel[(ra, "fwd")].get(t, ())), sorted(rel[(rb, "fwd")].get(t, ()))
            a, b = rng.choice(a_choices), rng.choice(b_choices)
            if a == b:
                continue
            answers = rel[(ra, "inv")][a] & rel[(rb, "inv")][b]
            if answers != rel[(ra, "inv")][a]:  # intersection must matter: A alone would be wrong
                questions.append((rng.choice(phrasings).format(a=a, b=b), sorted(answers), f"2entity:{ra}+{rb}"))
    rng.shuffle(questions)
    return facts, questions


COUNT = {  # (relation, direction) -> phrasings of "how many": the answer is the size of the set
    ("directed_by", "inv"): ["how many movies did [{}] direct", "how many films were directed by [{}]"],
    ("starred_actors", "inv"): ["how many films did [{}] act in", "in how many movies does [{}] appear"],
    ("written_by", "inv"): ["how many films did [{}] write"],
}
SUPERLATIVE = {  # (relation, direction, mode) -> phrasings: the movies of the set with the latest / earliest year
    ("directed_by", "inv", "max"): ["what is the most recent movie directed by [{}]",
                                    "which is the latest film [{}] directed"],
    ("directed_by", "inv", "min"): ["what is the oldest movie directed by [{}]",
                                    "which is the first film [{}] directed"],
    ("starred_actors", "inv", "max"): ["what is the newest film starring [{}]",
                                       "which is the latest movie with [{}]"],
    ("starred_actors", "inv", "min"): ["what is the earliest film starring [{}]",
                                       "which is the oldest movie with [{}]"],
}
COUNT_2ENTITY = ["how many films did [{a}] and [{b}] act in together", "how many movies feature both [{a}] and [{b}]"]


def operation_questions(facts: List[Tuple[str, str, str]], seed: int = 0):
    """(text, answers, qtype) of count, superlative and 2-entity count questions over the demo's
    facts: a count's answer is its numeral, a superlative's every tied movie."""
    rng = random.Random(seed + 1)
    inv: Dict[str, Dict[str, Set[str]]] = {}
    year: Dict[str, int] = {}
    for s_, r, o in facts:
        if r == "release_year":
            year[s_] = int(o)
        else:
            inv.setdefault(r, {}).setdefault(o, set()).add(s_)
    out = []
    for (r, _), phrasings in COUNT.items():
        for topic, films in sorted(inv[r].items()):
            out.append((rng.choice(phrasings).format(topic), [str(len(films))], "count"))
    for (r, _, mode), phrasings in SUPERLATIVE.items():
        for topic, films in sorted(inv[r].items()):
            if len(films) < 2:
                continue
            best = (max if mode == "max" else min)(year[f] for f in films)
            out.append((rng.choice(phrasings).format(topic), sorted(f for f in films if year[f] == best),
                        "argmax" if mode == "max" else "argmin"))
    actors = sorted(inv["starred_actors"])
    pairs = set()
    for film in sorted(year):
        cast = sorted(a for a in actors if film in inv["starred_actors"][a])
        if len(cast) >= 2:
            a, b = rng.sample(cast, 2)
            if (a, b) not in pairs:
                pairs.add((a, b))
                both = inv["starred_actors"][a] & inv["starred_actors"][b]
                out.append((rng.choice(COUNT_2ENTITY).format(a=a, b=b), [str(len(both))], "count-2entity"))
    rng.shuffle(out)
    return out


def _write_split(out: Path, prefix: str, questions) -> None:
    n = len(questions)
    parts = {"train": questions[: int(0.7 * n)], "valid": questions[int(0.7 * n): int(0.8 * n)],
             "test": questions[int(0.8 * n):]}
    for name, qs in parts.items():
        (out / f"{prefix}_{name}.txt").write_text("".join(f"{t}\t{'|'.join(a)}\n" for t, a, _ in qs), encoding="utf-8")
        (out / f"{prefix}_{name}_qtype.txt").write_text("".join(f"{q}\n" for _, _, q in qs), encoding="utf-8")


def write(out_dir, seed: int = 0) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    facts, questions = build(seed)
    (out / "kb.txt").write_text("".join(f"{s}|{r}|{o}\n" for s, r, o in facts), encoding="utf-8")
    _write_split(out, "qa", questions)
    _write_split(out, "qa_ops", operation_questions(facts, seed))


if __name__ == "__main__":
    write(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "data" / "demo")
