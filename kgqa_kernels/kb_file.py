"""The one reader of KB files (triples, one fact a line) in this repository: the model layer's
``kgqa.KnowledgeBase.load`` and the benchmark suite's ``bench.workloads.load_triples`` both call
:func:`read_triples`.

Format: ``subject|relation|object`` (MetaQA's kb.txt) or ``subject<TAB>relation<TAB>object``,
UTF-8. Each line's own separator counts: a line with a tab is tab-separated (so its names may hold
``|``), any other line ``|``-separated; a file may mix the two (one written by appending a TSV
export to a MetaQA file reads whole).

- Line ends: ``\\n``, ``\\r\\n`` (a file written on Windows reads the same) or ``\\r``; a ``\\r``
  never reaches a name or an error message.
- Blank (or whitespace-only) lines are ignored; they still count in the line numbers.
- Each field is stripped of surrounding spaces; an empty field is an error.
- Errors name the file and line: ``path:line: why: 'the line'``. With ``on_error="raise"`` the
  first one raises :class:`KBFormatError`; with ``on_error="skip"`` the line is left out and its
  message listed in ``TriplesFile.skipped``.
- A file without a single fact raises :class:`KBFormatError` in either mode.

Ids are given in order of first appearance: entities as subject or object, relations as they
come, so a file reads to the same ids every time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple, Union

import torch

ON_ERROR = ("raise", "skip")
MAX_QUOTED = 200  # characters of a bad line quoted in its error message


class KBFormatError(ValueError):
    """A malformed line in a KB file: the message starts with file:line."""


@dataclass
class TriplesFile:
    """What :func:`read_triples` found in a file."""

    entities: List[str]  # names; an entity's id is its index
    relations: List[str]
    triples: torch.Tensor  # [T, 3] int64 (subject, relation, object) ids, on the CPU
    lines: int = 0  # lines read, blank ones included (the last line's number)
    skipped: List[str] = field(default_factory=list)  # "file:line: why: 'line'" per skipped line

    @property
    def num_facts(self) -> int:
        return int(self.triples.shape[0])


def separator_of(line: str) -> str:
    """A line's separator: a tab if it has one, else ``|``."""
    return "\t" if "\t" in line else "|"


def split_fact(line: str, sep: str) -> Tuple[Tuple[str, str, str], str]:
    """((subject, relation, object), "") for a well-formed line (``\\n`` and ``\\r`` already
    removed), else ((), the reason it is not one)."""
    parts = line.split(sep)
    if len(parts) != 3:
        return (), f"expected 3 fields separated by {sep!r} (subject{sep}relation{sep}object), got {len(parts)}"
    fields = tuple(p.strip() for p in parts)
    if not all(fields):
        return (), "empty subject, relation or object"
    return fields, ""


def read_triples(path: Union[str, Path], on_error: str = "raise") -> TriplesFile:
    """Reads a KB file (see the module's docstring for the format and the errors)."""
    if on_error not in ON_ERROR:
        raise ValueError(f"read_triples(): on_error must be 'raise' or 'skip', got {on_error!r}")
    path = Path(path)
    entities: Dict[str, int] = {}
    relations: Dict[str, int] = {}
    rows: List[Tuple[int, int, int]] = []
    skipped: List[str] = []
    lines = 0
    # Universal newlines: "\r\n" and a lone "\r" end a line as "\n" does (the rstrip of "\r" below
    # is then only a guard).
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            lines = lineno
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            fact, why = split_fact(line, separator_of(line))
            if why:
                msg = f"{path}:{lineno}: {why}: {line[:MAX_QUOTED]!r}"
                if on_error == "raise":
                    raise KBFormatError(msg)
                skipped.append(msg)
                continue
            s, r, o = fact
            rows.append((entities.setdefault(s, len(entities)), relations.setdefault(r, len(relations)),
                         entities.setdefault(o, len(entities))))
    if not rows:
        raise KBFormatError(f"{path}: no facts found")
    return TriplesFile(list(entities), list(relations), torch.tensor(rows, dtype=torch.int64, device="cpu"), lines,
                       skipped)
