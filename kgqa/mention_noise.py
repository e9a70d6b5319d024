"""Names written the ways users write them (issue 21), and noisy copies of training questions.

Users do not type a KB's names exactly. Each kind below changes a name one way:

- lower_case: "Tom Hanks" -> "tom hanks"
- no_accents_punct: accents and punctuation dropped, "Amélie: Spider-Man" -> "Amelie SpiderMan"
- typo: one edit (a letter replaced, dropped or added: edit distance 1)
- dropped_tokens: only the longest word kept, or the first or the last word dropped
- abbreviation: the initials of a name of 3 words or more, a leading article left out
  ("The Lord of the Rings" -> "LOTR")
- word_order: the words in another order

A kind returns None for a name it cannot change that way (no abbreviation of a one-word name).
The noisy-mention benchmark (experiments/noisy_mentions.py) perturbs held-out MetaQA questions
with them; ``noisy_copies`` gives a learned-entity model perturbed copies of its own training
questions (``kgqa train --mention-noise``), so that its entity ranker and its candidate bandit see
names written as users write them, not only exact copies of the KB's (docs/results.md "Training on
noisy copies" measures what that buys).
"""
from __future__ import annotations

import random
import unicodedata
from typing import Callable, Dict, List, Optional, Sequence

from .config import MENTION_NOISE_KINDS as KINDS
from .questions import MENTION, Question

ARTICLES = ("the", "a", "an")  # left out of an abbreviation when they lead ("LOTR", not "TLOTR")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def strip_accents_punct(name: str) -> str:
    """Accents removed (NFKD, combining marks dropped), every character that is neither a letter,
    a digit nor a space dropped, spaces collapsed; case kept."""
    decomposed = unicodedata.normalize("NFKD", name)
    kept = "".join(c for c in decomposed if not unicodedata.combining(c) and (c.isalnum() or c.isspace()))
    return " ".join(kept.split())


def _initials(name: str) -> str:
    words = [w for w in name.split() if any(c.isalnum() for c in w)]
    if len(words) > 3 and words[0].lower() in ARTICLES:
        words = words[1:]
    return "".join(next(c for c in w if c.isalnum()).upper() for w in words)


def lower_case(name: str, rng: random.Random) -> Optional[str]:
    return name.lower()


def no_accents_punct(name: str, rng: random.Random) -> Optional[str]:
    return strip_accents_punct(name) or None


def typo(name: str, rng: random.Random) -> Optional[str]:
    """One letter or digit replaced (by another of the same case), dropped, or a letter added
    before one: edit distance 1. Names with fewer than 3 letters and digits are left alone."""
    at = [i for i, c in enumerate(name) if c.isalnum()]
    if len(at) < 3:
        return None
    i = rng.choice(at)
    op = rng.choice(("replace", "drop", "add"))
    if op == "drop":
        return name[:i] + name[i + 1 :]
    c = rng.choice(LETTERS)
    if op == "add":
        return name[:i] + c + name[i:]
    while c == name[i].lower():
        c = rng.choice(LETTERS)
    return name[:i] + (c.upper() if name[i].isupper() else c) + name[i + 1 :]


def dropped_token_draws(name: str) -> List[str]:
    """``dropped_tokens``' equally likely draws of ``name``: only the longest word kept (the first of
    equals), the first word dropped, the last dropped; [] for a name of one word."""
    words = name.split()
    if len(words) < 2:
        return []
    return [max(words, key=len), " ".join(words[1:]), " ".join(words[:-1])]


def dropped_tokens(name: str, rng: random.Random) -> Optional[str]:
    """One of ``dropped_token_draws``, drawn with ``rng``."""
    made = dropped_token_draws(name)
    return rng.choice(made) if made else None


def abbreviation(name: str, rng: random.Random) -> Optional[str]:
    """The initials, of names of 3 words or more (a leading article aside): people abbreviate long
    titles ("LOTR"), not "Robert Stack" to "RS", which no generator could tell from 100 others."""
    initials = _initials(name)
    return initials if len(initials) >= 3 else None


def word_order(name: str, rng: random.Random) -> Optional[str]:
    words = name.split()
    if len(set(words)) < 2:
        return None
    while True:  # a permutation that reads differently exists: two words differ
        shuffled = words[:]
        rng.shuffle(shuffled)
        if shuffled != words:
            return " ".join(shuffled)


PERTURB: Dict[str, Callable[[str, random.Random], Optional[str]]] = {
    "lower_case": lower_case, "no_accents_punct": no_accents_punct, "typo": typo, "dropped_tokens": dropped_tokens,
    "abbreviation": abbreviation, "word_order": word_order}


def eligible(kind: str, name: str) -> bool:
    """Whether ``kind`` changes ``name`` whatever the draw (checked on a fixed draw: every kind's
    draws all change an eligible name)."""
    out = PERTURB[kind](name, random.Random(0))
    return out is not None and out != name and bool(out.strip())


def check_kinds(kinds: Sequence[str], name: str = "kinds") -> tuple:
    """``kinds`` as a tuple, a ValueError naming ``name`` for an unknown or no kind."""
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in PERTURB]
    if bad or not kinds:
        raise ValueError(f"{name}: {'unknown kind ' + repr(bad[0]) if bad else 'no kind'}; the kinds are {', '.join(KINDS)}")
    return kinds


def noisy_copies(questions: Sequence[Question], share: float, seed: int, kinds: Sequence[str] = KINDS) -> List[Question]:
    """A perturbed copy of about ``share`` of ``questions`` (each drawn with that probability): the
    question's one [bracketed] mention rewritten by a kind drawn among ``kinds`` that changes it,
    still in brackets and still labelled with its gold topic entity, so that the candidate bandit
    learns where such a mention's entity is found (``kgqa.retrieval_policy.gold_mentions``) and the
    entity ranker, which reads the question without brackets, learns from the answers to pick it.
    Questions with no or several mentions, or none of whose kinds changes the name, get no copy.
    Deterministic given ``seed``."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share: {share} is not between 0 and 1")
    kinds = check_kinds(kinds)
    rng = random.Random(f"mention-noise|{seed}")
    out = []
    for q in questions:
        found = list(MENTION.finditer(q.text))
        if len(found) != 1 or len(q.topics) != 1 or rng.random() >= share:
            continue
        name = found[0].group(1)
        ok = [k for k in kinds if eligible(k, name)]
        if not ok:
            continue
        written = PERTURB[rng.choice(ok)](name, rng)  # adds no bracket: letters only
        text = q.text[: found[0].start()] + f"[{written}]" + q.text[found[0].end() :]
        out.append(Question(text, list(q.topics), list(q.answers), q.qtype, q.count))
    return out
