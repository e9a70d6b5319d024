"""The one reader of KB files (triples, one fact a line) in this repository: the model layer's
``kgqa.KnowledgeBase.load`` and the benchmark suite's ``bench.workloads.load_triples`` both call
:func:`read_triples`. Its line reader, :func:`text_lines`, reads every other text data file of
the package too (question and question-type files, ``kgqa.questions``).

Format: ``subject|relation|object`` (MetaQA's kb.txt) or ``subject<TAB>relation<TAB>object``,
UTF-8. Each line's own separator counts: a line with a tab is tab-separated (so its names may hold
``|``), any other line ``|``-separated; a file may mix the two (one written by appending a TSV
export to a MetaQA file reads whole).

- Encoding: UTF-8. A byte-order mark is dropped (at the start of the file, or of any line: a file
  with one appended to another); it never becomes part of a name. A line that is not UTF-8 is an
  error naming file, line and the first bad byte (``on_error="skip"`` skips it like any other).
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
from itertools import count
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Type, Union

import torch

ON_ERROR = ("raise", "skip")
MAX_QUOTED = 200  # characters of a bad line quoted in its error message
BOM = "\ufeff"
BLOCK_CHARS = 1 << 20  # lines read (and checked for UTF-8) a block of about this many characters at a time


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


def text_lines(path: Union[str, Path], error: Type[Exception] = ValueError,
               skipped: Optional[List[str]] = None) -> Iterator[Tuple[int, str]]:
    """(line number, line) for each line of the UTF-8 text file ``path``, its line end (``\\n``,
    ``\\r\\n`` or ``\\r``: universal newlines) and any byte-order mark removed; blank lines
    included. A line that is not UTF-8 raises ``error("path:line: not UTF-8 ...")``, or with a
    ``skipped`` list is left out and its message appended there."""
    # utf-8-sig drops a BOM at the start of the file. surrogateescape turns each undecodable byte
    # into a lone surrogate instead of failing the whole read at the decoder's chunk offset, with no
    # line number; a line holding one does not encode back to UTF-8. Checked a block of lines at a
    # time, line by line only in a block that fails: 1M lines (40 MB) read in 0.38 s, against 0.15 s
    # without any check and 4-7 s to parse them (`python experiments/kb_file_costs.py`); checking
    # every line took about 0.15 s more (a variant measured once, not kept).
    with open(path, encoding="utf-8-sig", errors="surrogateescape") as f:
        first = 1
        while lines := f.readlines(BLOCK_CHARS):
            block = "".join(lines)
            if BOM not in block and (block.isascii() or _is_utf8(block)):
                yield from zip(count(first), [line.rstrip("\n") for line in lines])
            else:
                yield from _checked_lines(path, first, lines, error, skipped)
            first += len(lines)


def _is_utf8(text: str) -> bool:
    """Whether ``text`` (decoded with surrogateescape) was UTF-8: no undecodable byte in it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _checked_lines(path, first: int, lines: List[str], error, skipped) -> Iterator[Tuple[int, str]]:
    for lineno, line in enumerate(lines, first):
        line = line.rstrip("\n")
        if line.startswith(BOM):
            line = line[1:]
        if not _is_utf8(line):
            at = next(i for i, c in enumerate(line) if "\udc80" <= c <= "\udcff")
            msg = (f"{path}:{lineno}: not UTF-8: byte {ord(line[at]) - 0xDC00:#04x} at character {at + 1} "
                   f"(convert the file to UTF-8, e.g. iconv -f latin1 -t utf-8)")
            if skipped is None:
                raise error(msg)
            skipped.append(msg)
            continue
        yield lineno, line


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
    for lineno, line in text_lines(path, KBFormatError, skipped if on_error == "skip" else None):
        lines = lineno
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
