"""The noisy-mention benchmark: MetaQA questions with the brackets removed and the topic entity
written the ways users write names, one perturbation per question, the kinds
(``kgqa.mention_noise.KINDS``: lower case, accents and punctuation dropped, a typo, dropped
tokens, an abbreviation, another word order) in equal shares.

A kind is only given to a question whose name it changes (no lower case for "1984", no
abbreviation of a one-word name); each kind gets the same number of questions, as many as the
scarcest kind allows (MetaQA 1-hop: names with accents or punctuation), each question at most one
kind. Deterministic given the seed. Writes, per hop N:

    DIR/N-hop/noisy.txt       question<TAB>answers (MetaQA's format, no brackets)
    DIR/N-hop/noisy_meta.tsv  kind<TAB>mention as written<TAB>start<TAB>end<TAB>gold entity's KB name
    DIR/N-hop/clean.txt, clean_meta.tsv   the same questions unperturbed (kind: the one its noisy twin got)

one line a question, the two files of a pair aligned. Usage:

    python experiments/noisy_mentions.py METAQA_DIR --hops 1 2 --seed 0 --out runs/noisy
"""
from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

# The kinds are the package's, which `kgqa train --mention-noise` also draws from.
from kgqa.mention_noise import KINDS, PERTURB, eligible
from kgqa.questions import MENTION as _MENTION


@dataclass
class Item:
    line: int  # the question's line in the source file, from 0
    kind: str
    clean: str  # the question, brackets removed
    noisy: str  # the same with the mention perturbed
    answers: str  # as the source file gives them
    gold: str  # the bracketed name (the gold entity's KB name)
    start: int  # the mention's characters in clean (then in noisy, to noisy_end)
    clean_end: int
    noisy_end: int
    mention: str  # the mention as written in noisy


def assign(names: Sequence[str], seed: int, salt: str = "", per_kind: Optional[int] = None) -> Dict[int, str]:
    """question index -> kind: each kind given to ``per_kind`` questions it changes (default: as
    many as the scarcest kind allows), each question at most one kind; the scarcest kinds pick
    first, each question order a seeded shuffle."""
    ok = {k: [i for i, n in enumerate(names) if eligible(k, n)] for k in KINDS}
    order = list(range(len(names)))
    random.Random(f"{seed}|{salt}|order").shuffle(order)
    rank = {i: r for r, i in enumerate(order)}
    pools = {k: sorted(v, key=rank.__getitem__) for k, v in ok.items()}
    kinds = sorted(KINDS, key=lambda k: (len(pools[k]), KINDS.index(k)))

    def fill(n: int) -> Optional[Dict[int, str]]:
        taken: Dict[int, str] = {}
        for k in kinds:
            got = 0
            for i in pools[k]:
                if got == n:
                    break
                if i not in taken:
                    taken[i] = k
                    got += 1
            if got < n:
                return None
        return taken

    if per_kind is not None:
        out = fill(per_kind)
        if out is None:
            raise ValueError(f"--per-kind {per_kind}: not that many questions for every kind")
        return out
    lo, hi = 0, min(len(v) for v in pools.values())  # fill(lo) always works
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fill(mid) is not None:
            lo = mid
        else:
            hi = mid - 1
    return fill(lo)


def make_noisy(lines: Sequence[str], seed: int, salt: str = "", per_kind: Optional[int] = None) -> List[Item]:
    """The benchmark's items from MetaQA lines (question<TAB>answers, one [bracketed] topic
    entity), in the lines' order. Lines with no or several brackets are left out. ``salt``
    (the hop) makes each file's draws its own."""
    parsed = []
    for n, line in enumerate(lines):
        q, _, answers = line.rstrip("\n").partition("\t")
        found = list(_MENTION.finditer(q))
        if len(found) == 1:
            parsed.append((n, q, answers, found[0]))
    kinds = assign([m.group(1) for _, _, _, m in parsed], seed, salt, per_kind)
    items = []
    for j in sorted(kinds):
        n, q, answers, m = parsed[j]
        gold, kind = m.group(1), kinds[j]
        mention = PERTURB[kind](gold, random.Random(f"{seed}|{salt}|{n}|{kind}"))
        pre, post = q[: m.start()], q[m.end() :]
        items.append(Item(n, kind, pre + gold + post, pre + mention + post, answers, gold, len(pre),
                          len(pre) + len(gold), len(pre) + len(mention), mention))
    return items


def write(items: Sequence[Item], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "noisy.txt", "w", encoding="utf-8") as f:
        f.writelines(f"{it.noisy}\t{it.answers}\n" for it in items)
    with open(folder / "noisy_meta.tsv", "w", encoding="utf-8") as f:
        f.writelines(f"{it.kind}\t{it.mention}\t{it.start}\t{it.noisy_end}\t{it.gold}\n" for it in items)
    with open(folder / "clean.txt", "w", encoding="utf-8") as f:
        f.writelines(f"{it.clean}\t{it.answers}\n" for it in items)
    with open(folder / "clean_meta.tsv", "w", encoding="utf-8") as f:
        f.writelines(f"{it.kind}\t{it.gold}\t{it.start}\t{it.clean_end}\t{it.gold}\n" for it in items)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="MetaQA questions with their topic mention perturbed (see the module doc)")
    ap.add_argument("metaqa", type=Path, help="MetaQA's folder (holds N-hop/qa_dev.txt)")
    ap.add_argument("--hops", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--split", default="dev", help="N-hop/qa_SPLIT.txt (default dev)")
    ap.add_argument("--per-kind", type=int, default=None,
                    help="questions per kind (default: the most every kind allows)")
    args = ap.parse_args(argv)
    for hop in args.hops:
        src = args.metaqa / f"{hop}-hop" / f"qa_{args.split}.txt"
        if not src.is_file():
            print(f"noisy_mentions: no file {src}", file=sys.stderr)
            return 2
        lines = src.read_text(encoding="utf-8").splitlines()
        try:
            items = make_noisy(lines, args.seed, f"{hop}-hop", args.per_kind)
        except ValueError as e:
            print(f"noisy_mentions: {src}: {e}", file=sys.stderr)
            return 2
        write(items, args.out / f"{hop}-hop")
        counts = {k: sum(it.kind == k for it in items) for k in KINDS}
        print(f"{hop}-hop: {len(items)} of {len(lines)} questions, per kind {counts} -> {args.out / f'{hop}-hop'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
