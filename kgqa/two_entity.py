"""2-entity questions from any KB, in MetaQA format with both topic entities in brackets: the
answers are the entities reached from [A] by one relation AND from [B] by another, and the
question is kept only where the intersection matters (A's relation alone gives more answers).

Phrasings: several per pair of MetaQA's movie relations; for other KBs, generic ones built from
the relation names."""
from __future__ import annotations

import random
from typing import Dict, List, Optional, Tuple

from .kb import KnowledgeBase
from .questions import Question

# MetaQA facts point from a movie: (movie, relation, value). A phrase describes "movie -relation-> [X]".
METAQA_CLAUSES: Dict[str, List[str]] = {
    "starred_actors": ["starred [{}]", "featured [{}]", "had [{}] in the cast"],
    "directed_by": ["were directed by [{}]", "were made by director [{}]"],
    "written_by": ["were written by [{}]", "had a screenplay by [{}]"],
    "has_genre": ["are [{}] films", "belong to the genre [{}]"],
    "release_year": ["came out in [{}]", "were released in [{}]"],
    "in_language": ["are in [{}]", "were made in [{}]"],
    "has_tags": ["are tagged [{}]", "are about [{}]"],
}
OPENERS = ["which movies {a} and {b}", "what films {a} and {b}", "name the movies that {a} and {b}"]


def _clauses(relation: str) -> List[str]:
    return METAQA_CLAUSES.get(relation, [f"have {relation.replace('_', ' ')} [{{}}]"])


def generate(kb: KnowledgeBase, n: int, seed: int = 0, max_answers: int = 20,
             relations: Optional[List[str]] = None) -> List[Question]:
    """Up to n questions. Facts (t, r, value) give, per value, the set of t it reaches through r."""
    rng = random.Random(seed)
    allowed = set(relations or kb.base_relations)
    by_value: Dict[Tuple[int, int], set] = {}  # (relation, value) -> subjects
    by_subject: Dict[int, List[Tuple[int, int]]] = {}
    for s, p, o in kb.triples.tolist():
        if kb.base_relations[p] in allowed:
            by_value.setdefault((p, o), set()).add(s)
            by_subject.setdefault(s, []).append((p, o))
    subjects = sorted(s for s, facts in by_subject.items() if len(facts) >= 2)
    out, seen = [], set()
    for _ in range(20 * n):
        if len(out) >= n or not subjects:
            break
        t = rng.choice(subjects)
        (pa, a), (pb, b) = rng.sample(by_subject[t], 2)
        if a == b or (a, b) in seen or any(c in kb.entities[e] for e in (a, b) for c in "[]"):
            continue
        answers = by_value[(pa, a)] & by_value[(pb, b)]
        if answers == by_value[(pa, a)] or len(answers) > max_answers:
            continue  # A alone would answer it, or too broad to be a question
        seen.add((a, b))
        clause_a = rng.choice(_clauses(kb.base_relations[pa])).format(kb.entities[a])
        clause_b = rng.choice(_clauses(kb.base_relations[pb])).format(kb.entities[b])
        text = rng.choice(OPENERS).format(a=clause_a, b=clause_b)
        qtype = f"2entity:{kb.base_relations[pa]}+{kb.base_relations[pb]}"
        out.append(Question(text, [a, b], sorted(answers), qtype))
    return out
