"""How forgiving [bracketed] names are (``kgqa.aliases.AliasIndex.resolve``, which ``kgqa ask``
uses through ``kgqa.questions.parse_question``), on a KB's own names:

- the time to build the alias index of all its names (what a KB pays once, on the first name that
  is not exact: ``KnowledgeBase.aliases``) and per resolve;
- names with one typo (a letter replaced, dropped, added or two swapped; seeded): resolved to the
  right entity, to a wrong one, or refused with suggestions;
- names written in upper or lower case: the same;
- names NOT in the index (a tenth of the KB's names, held out of it): any that resolves is a wrong
  answer waiting to happen; those with a normalised twin in the index (MetaQA has "Heat" and
  "heat") are counted apart, since no rule can tell them from a typo.

For a grid of (FUZZY_MIN, FUZZY_MARGIN). Usage (from the repository root):

    python experiments/forgiving_names.py kgqa/data/demo/kb.txt
    python experiments/forgiving_names.py METAQA_DIR/kb.txt
"""
import argparse
import random
import time

from kgqa.aliases import FUZZY_MARGIN, FUZZY_MIN, AliasIndex, normalise
from kgqa_kernels.kb_file import read_triples

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def typo(name: str, rng: random.Random) -> str:
    s = list(name)
    i = rng.randrange(len(s))
    kind = rng.choice(["replace", "drop", "add", "swap"])
    if kind == "replace":
        s[i] = rng.choice(LETTERS)
    elif kind == "drop" and len(s) > 1:
        del s[i]
    elif kind == "add":
        s.insert(i, rng.choice(LETTERS))
    elif kind == "swap" and i + 1 < len(s):
        s[i], s[i + 1] = s[i + 1], s[i]
    return "".join(s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kb")
    ap.add_argument("--n", type=int, default=2000, help="queries of each kind")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    names = read_triples(args.kb, "raise").entities
    t0, c0 = time.perf_counter(), time.process_time()
    AliasIndex(names)
    print(f"{args.kb}: {len(names)} names; the alias index of all of them built in {time.perf_counter() - t0:.2f} s "
          f"({time.process_time() - c0:.2f} s of CPU time)")

    rng = random.Random(args.seed)
    shuffled = list(names)
    rng.shuffle(shuffled)
    held, kept = shuffled[: len(names) // 10], shuffled[len(names) // 10 :]
    index = AliasIndex(kept)
    ids = {n: i for i, n in enumerate(kept)}
    sample = rng.sample(kept, min(args.n, len(kept)))
    typos = [(typo(n, rng), ids[n]) for n in sample]
    typos = [(q, e) for q, e in typos if normalise(q) not in index.normalised]  # still a typo after normalising
    cases = [(n.upper() if rng.random() < 0.5 else n.lower(), ids[n]) for n in sample]
    cases = [(q, e) for q, e in cases if q not in index.exact]
    absent = rng.sample(held, min(args.n, len(held)))
    twins = sum(normalise(q) in index.normalised for q in absent)
    print(f"index of {len(kept)} names; {len(typos)} one-typo names, {len(cases)} names in another case, "
          f"{len(absent)} names not in the index ({twins} of them with a normalised twin in it)")

    t0 = time.perf_counter()
    for q, _ in typos:
        index.resolve(q)
    print(f"resolve: {1000 * (time.perf_counter() - t0) / max(1, len(typos)):.2f} ms per one-typo name")

    grid = sorted({(FUZZY_MIN, FUZZY_MARGIN)} | {(m, g) for m in (0.8, 0.85, 0.88, 0.9) for g in (0.03, 0.05, 0.1)})
    print("min   margin | typos: right  wrong  refused | case: right  wrong | not in KB: resolved (no twin)")
    for lo, margin in grid:
        def rates(queries):
            got = [index.resolve(q, lo, margin).entity for q, _ in queries]
            right = sum(g == e for g, (_, e) in zip(got, queries)) / max(1, len(queries))
            wrong = sum(g is not None and g != e for g, (_, e) in zip(got, queries)) / max(1, len(queries))
            return right, wrong

        t_right, t_wrong = rates(typos)
        c_right, c_wrong = rates(cases)
        resolved = [index.resolve(q, lo, margin).entity is not None for q in absent]
        no_twin = sum(r for r, q in zip(resolved, absent) if normalise(q) not in index.normalised)
        mark = "  (the default)" if (lo, margin) == (FUZZY_MIN, FUZZY_MARGIN) else ""
        print(f"{lo:.2f}  {margin:.2f}   |        {t_right:.3f}  {t_wrong:.3f}  {1 - t_right - t_wrong:.3f}   |"
              f"       {c_right:.3f}  {c_wrong:.3f} |            {sum(resolved) / len(absent):.3f} "
              f"({no_twin / len(absent):.3f}){mark}")


if __name__ == "__main__":
    main()
