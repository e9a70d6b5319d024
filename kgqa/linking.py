"""Candidate spans and entities for questions without [brackets], the first step of learned entity
resolution: every word n-gram up to ``max_words`` long, looked up in the alias index. The learned span and entity
scorers will rank these; here they are only enumerated, and ``python -m kgqa.linking KB QA``
measures how often the gold topic entity is among them (the ceiling of any ranker over them) and
how often the plain rule "longest span with an exact or normalised match" picks it."""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Iterator, List, Tuple

from .aliases import AliasIndex, Candidate
from .questions import MENTION

_TOKEN = re.compile(r"\S+")


def strip_brackets(text: str) -> Tuple[str, List[str]]:
    """(the question as a user types it, the bracketed names in order)."""
    return MENTION.sub(lambda m: m.group(1), text), MENTION.findall(text)


@dataclass
class Span:
    start: int  # character offsets in the plain question
    end: int
    text: str
    candidates: List[Candidate]


def word_spans(text: str, max_words: int) -> Iterator[Tuple[int, int]]:
    """(start, end) character offsets of every run of 1 to ``max_words`` words of ``text``."""
    words = [(m.start(), m.end()) for m in _TOKEN.finditer(text)]
    for i in range(len(words)):
        for j in range(i, min(len(words), i + max_words)):
            yield words[i][0], words[j][1]


def candidate_spans(text: str, index: AliasIndex, max_words: int = 8, per_span: int = 10,
                    fuzzy: bool = False) -> List[Span]:
    """Spans with at least one candidate; exact and normalised matches, plus trigram matches
    with ``fuzzy`` (slower: every n-gram is looked up)."""
    spans = []
    for start, end in word_spans(text, max_words):
        piece = text[start:end]
        cands = index.lookup(piece, limit=per_span, fuzzy=fuzzy)
        if cands:
            spans.append(Span(start, end, piece, cands))
    return spans


def longest_match(spans: List[Span]) -> List[int]:
    """The rule baseline: the entities of the longest span with a match (ties: the leftmost)."""
    if not spans:
        return []
    best = max(spans, key=lambda s: (s.end - s.start, -s.start))
    return [c.entity for c in best.candidates]


def _main(argv=None) -> int:
    import argparse
    import time

    from kgqa_kernels.kb_file import text_lines

    from .kb import KnowledgeBase

    ap = argparse.ArgumentParser(description="candidate recall and the longest-match rule on bracketed questions")
    ap.add_argument("kb")
    ap.add_argument("questions")
    ap.add_argument("--limit", type=int, default=0, help="only the first N questions")
    args = ap.parse_args(argv)
    kb = KnowledgeBase.load(args.kb)
    t0 = time.perf_counter()
    index = AliasIndex(kb.entities)
    n = recall = rule = single = 0
    for _, line in text_lines(args.questions):
        if args.limit and n >= args.limit:
            break
        text = line.split("\t", 1)[0]
        plain, gold_names = strip_brackets(text)
        gold = {kb.entity_ids[g] for g in gold_names if g in kb.entity_ids}
        if not gold:
            continue
        n += 1
        spans = candidate_spans(plain, index)
        found = {c.entity for s in spans for c in s.candidates}
        recall += gold <= found
        picked = longest_match(spans)
        rule += bool(picked) and picked[0] in gold
        single += len(gold) == 1
    secs = time.perf_counter() - t0
    print(f"{n} questions ({single} with one topic entity): gold topic entities among the candidates "
          f"{recall / n:.4f}; longest-match rule's first candidate is a gold topic {rule / n:.4f}; {secs:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
