"""Relation names as words: what the relation head of ``relation_head="names"`` (``kgqa.model``)
reads. A KB's relation names come in many styles, ``reports_to``, ``reportsTo``,
``people.person.place_of_birth``, Freebase's ``/music/recording/releases`` or
``__music__recording__releases``; each becomes its words (``reports to``, ``people person place of
birth``), and an inverse relation (``r~inv``, ``kgqa.kb``) the words of r with a marker, ``reports
to (inverse)``, which the question encoder reads like any other text."""
from __future__ import annotations

import re
from typing import List

from .kb import INVERSE_SUFFIX

INVERSE_MARK = "(inverse)"
# camelCase: a word boundary between a lower-case letter or digit and an upper-case one
# ("reportsTo"), and between an acronym and a capitalised word ("HTTPServer"); "P31" stays a word.
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")  # "_", "__", ".", "/", "-", ":", spaces, ...


def is_inverse(name: str) -> bool:
    return name.endswith(INVERSE_SUFFIX)


def name_words(text: str) -> List[str]:
    """The words of a name, lower-case, split at separators and camelCase (possibly none): the one
    splitter of names into words (``kgqa.phrasing`` and ``kgqa.calibration`` use it too)."""
    return [w.lower() for part in _SEPARATORS.split(text) for w in _CAMEL.split(part) if w]


def relation_words(name: str) -> List[str]:
    """The words of a relation's name, lower-case, the inverse suffix dropped: ``reportsTo~inv`` and
    ``reports_to`` are ["reports", "to"]. A name with no letter or digit is one word, itself."""
    base = name[: -len(INVERSE_SUFFIX)] if is_inverse(name) else name
    return name_words(base) or [base]


def relation_phrase(name: str) -> str:
    """The text a relation's name is encoded as: its words, and for an inverse relation the marker
    ``(inverse)`` after them ("reports to (inverse)": the subject and object swapped)."""
    words = " ".join(relation_words(name))
    return f"{words} {INVERSE_MARK}" if is_inverse(name) else words


def relation_phrases(names: List[str]) -> List[str]:
    return [relation_phrase(n) for n in names]
