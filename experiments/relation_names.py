"""Relation choice from few examples: the relation head that reads relation names against the one
that classifies relation ids (``kgqa.relation_head``), on a generated KB with many relations and
few questions each, some relations held out of training entirely. Backs docs/results.md
"Relation names".

The KB: 30 entity types in several domains (people, places, business, film, music, books,
sports, medicine, food, languages, politics) and 147 relations between them with readable names,
each written in one of five styles real KBs use (``place_of_birth``, ``placeOfBirth``,
``people.person.place_of_birth``, ``/people/person/place_of_birth``,
``__people__person__place_of_birth``); several relations join the same two types (a person's place
of birth, of death, of residence, burial place), so the types alone never decide. Facts are drawn
at random (most subjects have one object per relation, some two or three).

The questions say each hop's relation in its words, nested by one of several templates per hop
("the place of birth of [X]", "[X]'s place of birth", and for an inverse hop "the person whose
place of birth is [X]", "the person that has [X] as their place of birth") and per question ("what
is ...", "tell me ...", "name ...", ...). A path is 1 to 3 hops (a third each, where there are enough), forward or
inverse, with no hop undoing the one before; its answers follow the facts and, as the model does,
never return to the topic entity. Some relations (``--held-out``, default 10% of them) are held out:
no training question uses them, in either direction.

Splits: ``--paths`` distinct paths over the other relations, each with 2 training questions and 1
test question on other topic entities ("seen paths"); and ``--held-out-paths`` paths that use at
least one held-out relation, 1 test question each ("held-out relations"). Training holds out
kgqa train's default 10% of the training questions for validation, and otherwise runs with
TrainConfig's defaults (the default encoder, all-MiniLM-L6-v2 frozen; epochs and patience as
TrainConfig has them, or --epochs, --patience), 3 hops, once per relation head, on the same data.

Usage: python experiments/relation_names.py OUT [--seeds 0 1 2] [--heads ids names] [--epochs N --patience N]
Writes OUT/seed-N/{kb.txt, train.txt, test_seen.txt, test_held_out.txt, held_out_relations.txt}
and beside each question file a question-type file, its hop counts (kgqa's formats, so `kgqa
train` and `kgqa eval` can rerun any part), and prints a Markdown table: test Hits@1 per head and
split (and per hop count), per seed and their mean."""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

# The kgqa of this checkout, wherever the script is started from (an installed kgqa may be another's).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (subject type, relation words, object type)
RELATIONS = [
    # people
    ("person", "place of birth", "city"), ("person", "place of death", "city"),
    ("person", "place of residence", "city"), ("person", "burial place", "city"),
    ("person", "nationality", "country"), ("person", "country of citizenship", "country"),
    ("person", "spouse", "person"), ("person", "parent", "person"), ("person", "sibling", "person"),
    ("person", "mentor", "person"), ("person", "doctoral advisor", "person"), ("person", "best friend", "person"),
    ("person", "alma mater", "university"), ("person", "teaches at", "university"),
    ("person", "employer", "company"), ("person", "founded organization", "company"),
    ("person", "board member of", "company"),
    ("person", "awards won", "award"), ("person", "award nominations", "award"),
    ("person", "languages spoken", "language"), ("person", "native language", "language"),
    ("person", "instruments played", "instrument"), ("person", "musical genre", "genre"),
    ("person", "sport played", "sport"), ("person", "plays for team", "team"), ("person", "coaches team", "team"),
    ("person", "cause of death", "disease"), ("person", "medical condition", "disease"),
    ("person", "religion", "religion"), ("person", "party membership", "party"),
    ("person", "favorite dish", "dish"),
    # places
    ("city", "located in country", "country"), ("city", "twin city", "city"), ("city", "mayor", "person"),
    ("city", "famous dish", "dish"),
    ("country", "capital", "city"), ("country", "largest city", "city"),
    ("country", "official language", "language"), ("country", "neighbouring country", "country"),
    ("country", "currency", "currency"), ("country", "head of state", "person"),
    ("country", "head of government", "person"), ("country", "main religion", "religion"),
    ("country", "continent", "continent"), ("country", "national sport", "sport"),
    ("country", "ruling party", "party"),
    # business and education
    ("company", "headquarters location", "city"), ("company", "country of incorporation", "country"),
    ("company", "founder", "person"), ("company", "chief executive officer", "person"),
    ("company", "chairman", "person"), ("company", "parent company", "company"),
    ("company", "subsidiary", "company"), ("company", "main competitor", "company"),
    ("company", "industry", "industry"), ("company", "main product", "drug"),
    ("university", "campus location", "city"), ("university", "university country", "country"),
    ("university", "university president", "person"), ("university", "notable alumni", "person"),
    ("university", "teaching language", "language"),
    # film
    ("film", "directed by", "person"), ("film", "written by", "person"), ("film", "produced by", "person"),
    ("film", "starring", "person"), ("film", "music composed by", "person"),
    ("film", "cinematography by", "person"), ("film", "edited by", "person"),
    ("film", "country of origin", "country"), ("film", "filming location", "city"),
    ("film", "film language", "language"), ("film", "film genre", "genre"),
    ("film", "production company", "company"), ("film", "distributed by", "company"),
    ("film", "film awards won", "award"), ("film", "sequel", "film"), ("film", "remake of", "film"),
    ("film", "based on book", "book"),
    # music
    ("album", "album artist", "person"), ("album", "album producer", "person"),
    ("album", "record label", "company"), ("album", "album genre", "genre"),
    ("album", "recording location", "city"),
    ("song", "appears on album", "album"), ("song", "songwriter", "person"), ("song", "performer", "person"),
    ("song", "song producer", "person"), ("song", "lyrics language", "language"),
    ("song", "cover of", "song"), ("song", "featured in film", "film"),
    ("genre", "parent genre", "genre"), ("genre", "genre origin city", "city"),
    ("instrument", "instrument family", "instrument"), ("instrument", "inventor", "person"),
    # books
    ("book", "author", "person"), ("book", "illustrator", "person"), ("book", "translator", "person"),
    ("book", "book editor", "person"), ("book", "publisher", "company"),
    ("book", "original language", "language"), ("book", "literary genre", "genre"),
    ("book", "setting city", "city"), ("book", "dedicated to", "person"),
    # sports
    ("team", "home city", "city"), ("team", "team sport", "sport"), ("team", "head coach", "person"),
    ("team", "team captain", "person"), ("team", "team owner", "person"), ("team", "league", "league"),
    ("team", "home stadium", "stadium"), ("team", "main rival", "team"), ("team", "team sponsor", "company"),
    ("league", "league country", "country"), ("league", "league sport", "sport"),
    ("league", "league commissioner", "person"),
    ("stadium", "stadium location", "city"), ("stadium", "architect", "person"),
    ("stadium", "stadium owner", "company"),
    # awards
    ("award", "presented by", "company"), ("award", "award country", "country"),
    ("award", "first recipient", "person"), ("award", "award category genre", "genre"),
    # medicine
    ("disease", "symptoms", "symptom"), ("disease", "treated with", "drug"),
    ("disease", "affects organ", "organ"), ("disease", "discovered by", "person"),
    ("drug", "manufacturer", "company"), ("drug", "side effects", "symptom"),
    ("drug", "active ingredient", "ingredient"), ("symptom", "felt in organ", "organ"),
    # food
    ("dish", "main ingredient", "ingredient"), ("dish", "cuisine origin country", "country"),
    ("dish", "created by chef", "person"), ("ingredient", "grown in", "country"),
    ("ingredient", "main producer", "company"),
    # languages, religions, politics
    ("language", "language family", "language"), ("language", "writing system", "script"),
    ("language", "spoken in", "country"), ("religion", "religion founder", "person"),
    ("religion", "holy city", "city"), ("party", "party leader", "person"),
    ("party", "party country", "country"), ("party", "political ideology", "ideology"),
    ("currency", "issued by", "company"), ("continent", "largest country", "country"),
    ("sport", "governing body", "company"), ("sport", "sport origin country", "country"),
]

# How many entities of each type; types not listed have DEFAULT_COUNT.
COUNTS = {"person": 300, "city": 80, "country": 40, "company": 60, "film": 60, "book": 50, "album": 40,
          "song": 50, "team": 40}
DEFAULT_COUNT = 25
# The Freebase-like styles' domain per subject type.
DOMAINS = {"person": "people", "city": "location", "country": "location", "company": "business",
           "university": "education", "film": "film", "album": "music", "song": "music", "genre": "music",
           "instrument": "music", "book": "book", "team": "sports", "league": "sports", "stadium": "sports",
           "award": "award", "disease": "medicine", "drug": "medicine", "symptom": "medicine",
           "dish": "food", "ingredient": "food", "language": "language", "religion": "religion",
           "party": "government", "currency": "finance", "continent": "location", "sport": "sports"}

QUESTION = ["what is {np}", "what are {np}", "tell me {np}", "name {np}", "who or what is {np}", "{np}",
            "which {type} is {np}", "can you find {np}"]
FORWARD = ["the {rel} of {np}", "{np}'s {rel}", "the {rel} of {np}"]  # the first form twice as often
INVERSE = ["the {type} whose {rel} is {np}", "the {type} that has {np} as its {rel}", "which {type} has {rel} {np}"]


def relation_name(subject: str, words: str, rng: random.Random) -> str:
    """The relation's name in a style drawn at random."""
    w = words.split()
    style = rng.randrange(5)
    if style == 0:
        return "_".join(w)
    if style == 1:
        return w[0] + "".join(x.capitalize() for x in w[1:])
    path = [DOMAINS.get(subject, subject), subject, "_".join(w)]
    if style == 2:
        return ".".join(path)
    if style == 3:
        return "/" + "/".join(path)
    return "".join("__" + p for p in path)


class Generated:
    def __init__(self, seed: int, held_out_fraction: float):
        rng = random.Random(seed)
        self.rng = rng
        types = sorted({t for s, _, o in RELATIONS for t in (s, o)})
        self.entities: Dict[str, List[str]] = {t: [f"{t} {i}" for i in range(COUNTS.get(t, DEFAULT_COUNT))]
                                               for t in types}
        self.relations = []  # (name, subject type, words, object type)
        for s, words, o in RELATIONS:
            self.relations.append((relation_name(s, words, rng), s, words, o))
        names = [r[0] for r in self.relations]
        assert len(set(names)) == len(names), "relation names must be distinct"
        # facts[rel index][subject] = set of objects; and the reverse
        self.forward: List[Dict[str, set]] = []
        self.backward: List[Dict[str, set]] = []
        for name, s, words, o in self.relations:
            fw, bw = defaultdict(set), defaultdict(set)
            for subj in self.entities[s]:
                k = rng.choices((0, 1, 2, 3), (0.25, 0.55, 0.15, 0.05))[0]
                for obj in rng.sample(self.entities[o], min(k, len(self.entities[o]))):
                    if obj != subj:
                        fw[subj].add(obj)
                        bw[obj].add(subj)
            self.forward.append(fw)
            self.backward.append(bw)
        n_held = max(1, round(held_out_fraction * len(self.relations)))
        self.held_out = set(rng.sample(range(len(self.relations)), n_held))

    def facts(self):
        for (name, *_), fw in zip(self.relations, self.forward):
            for subj in sorted(fw):
                for obj in sorted(fw[subj]):
                    yield subj, name, obj

    def random_path(self, hops: int, held: Optional[bool]) -> Optional[Tuple[Tuple[int, bool], ...]]:
        """A path of ``hops`` (relation index, inverse) steps whose types chain, with no step undoing
        the one before; ``held``: True, it uses a held-out relation; False, none; None: whatever."""
        rng = self.rng
        cur = rng.choice(sorted(self.entities))
        path = []
        for _ in range(hops):
            options = [(i, False) for i, r in enumerate(self.relations) if r[1] == cur]
            options += [(i, True) for i, r in enumerate(self.relations) if r[3] == cur]
            if path:
                options = [(i, inv) for i, inv in options if not (i == path[-1][0] and inv != path[-1][1])]
            if held is False:
                options = [(i, inv) for i, inv in options if i not in self.held_out]
            if not options:
                return None
            # inverse steps a quarter of the time
            fw = [o for o in options if not o[1]]
            inv = [o for o in options if o[1]]
            pick = rng.choice(inv if inv and (not fw or rng.random() < 0.25) else fw)
            path.append(pick)
            rel = self.relations[pick[0]]
            cur = rel[1] if pick[1] else rel[3]
        if held and not any(i in self.held_out for i, _ in path):
            return None
        return tuple(path)

    def start_type(self, path) -> str:
        i, inv = path[0]
        return self.relations[i][3] if inv else self.relations[i][1]

    def answers(self, topic: str, path) -> set:
        """The path followed from ``topic``, never returning to it (as the model's hops do)."""
        xs = {topic}
        for i, inv in path:
            step = self.backward[i] if inv else self.forward[i]
            xs = {y for x in xs for y in step.get(x, ())} - {topic}
        return xs

    def question(self, topic: str, path) -> str:
        rng = self.rng
        np = f"[{topic}]"
        for i, inv in path:
            _, s, words, o = self.relations[i]
            np = rng.choice(INVERSE if inv else FORWARD).format(rel=words, np=np, type=s)
        i, inv = path[-1]
        answer_type = self.relations[i][1] if inv else self.relations[i][3]
        return rng.choice(QUESTION).format(np=np, type=answer_type)

    def questions_on(self, path, n: int, max_answers: int = 30) -> Optional[List[Tuple[str, List[str]]]]:
        """``n`` questions on ``path`` from distinct topic entities with 1 to ``max_answers``
        answers, or None if the path has fewer such entities."""
        rng = self.rng
        starts = list(self.entities[self.start_type(path)])
        rng.shuffle(starts)
        out = []
        for topic in starts:
            ans = self.answers(topic, path)
            if 1 <= len(ans) <= max_answers:
                out.append((self.question(topic, path), sorted(ans)))
                if len(out) == n:
                    return out
        return None


def generate(out: Path, seed: int, paths: int, held_out_paths: int, held_out_fraction: float) -> dict:
    g = Generated(seed, held_out_fraction)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "kb.txt", "w", encoding="utf-8") as f:
        for s, r, o in g.facts():
            f.write(f"{s}|{r}|{o}\n")
    (out / "held_out_relations.txt").write_text("".join(g.relations[i][0] + "\n" for i in sorted(g.held_out)))

    def draw(count, held, per_path):
        """``count`` distinct paths, 1, 2 and 3 hops in turn, ``per_path`` questions each; a hop count
        with no new path left (1 hop over the held-out relations) gives fewer."""
        seen, rows = set(), []
        for k in range(count):
            for _ in range(2000):
                path = g.random_path(1 + k % 3, held)
                if path is None or path in seen:
                    continue
                qs = g.questions_on(path, per_path)
                if qs is not None:
                    seen.add(path)
                    rows.append((path, qs))
                    break
        return rows

    def write(name, rows):
        """NAME.txt, and NAME_qtype.txt: each question's hop count ("2hop")."""
        with open(out / f"{name}.txt", "w", encoding="utf-8") as f, open(out / f"{name}_qtype.txt", "w") as t:
            for path, (text, answers) in rows:
                f.write(f"{text}\t{'|'.join(answers)}\n")
                t.write(f"{len(path)}hop\n")

    seen_rows = draw(paths, False, 3)
    held_rows = draw(held_out_paths, True, 1)
    write("train", [(p, q) for p, qs in seen_rows for q in qs[:2]])
    write("test_seen", [(p, qs[2]) for p, qs in seen_rows])
    write("test_held_out", [(p, qs[0]) for p, qs in held_rows])
    facts = sum(1 for _ in g.facts())
    return {"relations": len(g.relations), "held_out": len(g.held_out), "facts": facts,
            "entities": sum(len(v) for v in g.entities.values()), "train": 2 * len(seen_rows),
            "test_seen": len(seen_rows), "test_held_out": len(held_rows)}


def run(data: Path, head: str, seed: int, out: Optional[Path], epochs: int, patience: int) -> dict:
    from kgqa import KnowledgeBase, TrainConfig, read_questions, train
    from kgqa.batching import split

    kb = KnowledgeBase.load(data / "kb.txt", use_cache=False)
    train_qs, _ = read_questions(data / "train.txt", kb, data / "train_qtype.txt")
    tr, va = split(train_qs, 0.1, seed)  # kgqa train's default --valid-fraction
    cfg = TrainConfig(hops=3, seed=seed, relation_head=head, epochs=epochs, patience=patience)
    t0 = time.perf_counter()
    qa = train(kb, tr, va, cfg, progress=False, log=lambda s: None)
    minutes = (time.perf_counter() - t0) / 60
    if out is not None:
        qa.save(out, str(data / "kb.txt"))
    result = {"minutes": minutes, "epochs": len(cfg.history)}
    for split_name in ("test_seen", "test_held_out"):
        qs, _ = read_questions(data / f"{split_name}.txt", kb, data / f"{split_name}_qtype.txt")
        metrics = qa.evaluate(qs)
        result[split_name] = metrics["hits@1"]
        result[f"{split_name}_per_hops"] = {t: m["hits@1"] for t, m in sorted(metrics["per_qtype"].items())}
    return result


def main() -> None:
    from kgqa import TrainConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="data and training seeds, one run each")
    ap.add_argument("--heads", nargs="+", default=["ids", "names"])
    ap.add_argument("--paths", type=int, default=400, help="distinct training paths (2 training, 1 test question each)")
    ap.add_argument("--held-out-paths", type=int, default=150)
    ap.add_argument("--held-out", type=float, default=0.1, help="the share of relations held out of training")
    ap.add_argument("--save", action="store_true", help="save each model under OUT/seed-N/model-HEAD")
    ap.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ap.add_argument("--patience", type=int, default=TrainConfig.patience)
    args = ap.parse_args()
    rows = defaultdict(dict)
    for seed in args.seeds:
        data = args.out / f"seed-{seed}"
        stats = generate(data, seed, args.paths, args.held_out_paths, args.held_out)
        print(f"seed {seed}: {json.dumps(stats)}", flush=True)
        for head in args.heads:
            r = run(data, head, seed, data / f"model-{head}" if args.save else None, args.epochs, args.patience)
            rows[head][seed] = r
            print(f"seed {seed} head {head}: {json.dumps(r)}", flush=True)
    print()
    print("| relation head | seed | seen paths Hits@1 (1 / 2 / 3 hops) | held-out relations Hits@1 (1 / 2 / 3 hops) "
          "| epochs |")
    print("|---|---|---|---|---|")
    keys = ["test_seen", "test_held_out"]
    for head in args.heads:
        for seed in args.seeds:
            print(f"| {head} | {seed} | {_cells(rows[head][seed], keys)} | {rows[head][seed]['epochs']} |")
        if len(args.seeds) > 1:
            mean = {k: sum(rows[head][s][k] for s in args.seeds) / len(args.seeds) for k in keys}
            for k in keys:
                hops = rows[head][args.seeds[0]][f"{k}_per_hops"]
                mean[f"{k}_per_hops"] = {t: sum(rows[head][s][f"{k}_per_hops"][t] for s in args.seeds) / len(args.seeds)
                                         for t in hops}
            print(f"| {head} | mean | {_cells(mean, keys)} | |")


def _cells(r: dict, keys) -> str:
    """'83.5 (98.5 / 80.0 / 72.0)' per split, Hits@1 in percent, joined by table separators."""
    return " | ".join(f"**{100 * r[k]:.1f}** ({' / '.join(f'{100 * v:.1f}' for _, v in sorted(r[f'{k}_per_hops'].items()))})"
                      for k in keys)

if __name__ == "__main__":
    main()
