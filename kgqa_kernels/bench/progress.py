"""Progress of a benchmark run: one line per case with its time and an ETA."""
from __future__ import annotations

import sys
import time
from typing import Callable, Optional, TextIO


def duration(seconds: float) -> str:
    """'0.41 s', '52 s', '2 min 05 s'."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def work_units(size: float) -> float:
    """A case's expected cost for the ETA from its size (facts x batch x follows x passes):
    size ** 0.5, far less than proportional. In a quick suite run (docs/benchmarks.md) a case on
    MetaQA's shape (13.5x the small KB's facts) took 3x as long as one on the small KB, and a
    forward + backward (3 passes) 1.8-2x as long as a forward: each call has fixed costs, the
    dense einsum grows with entities rather than facts, and slow providers stop repeating sooner
    (the time budget per case)."""
    return float(max(size, 1)) ** 0.5


class Progress:
    """Counts the cases of a run and writes "[3/14] <case> ... 0.41 s, ETA 52 s" per case to
    `stream` (None: silent). The ETA scales the wall time since the first planned case by the work
    left, in units the caller gives each case (work_units), so a run of small and large KBs is not
    judged by its small cases' count alone. A plan may change as it runs (a KB read from a file has
    its size only once built): expect() takes negative counts."""

    def __init__(self, stream: Optional[TextIO] = sys.stderr, clock: Callable[[], float] = time.perf_counter):
        self.stream = stream
        self.clock = clock
        self.start = None
        self.total = self.done = 0
        self.units_total = self.units_done = 0.0

    def expect(self, cases: int, units: float) -> None:
        if self.start is None:
            self.start = self.clock()
        self.total += cases
        self.units_total += units

    def eta(self) -> Optional[float]:
        """Seconds left by the rate so far; None before any work is done."""
        if self.start is None or self.units_done <= 0:
            return None
        left = max(self.units_total - self.units_done, 0.0)
        return (self.clock() - self.start) * left / self.units_done

    def cases_done(self, cases) -> None:
        """Cases that finished together (a workload's providers are timed in rounds): each a
        (label, seconds it took, units, outcome); outcome, if any, replaces the time (e.g.
        "skipped: ..."). One line each, all with the ETA after the last of them."""
        cases = list(cases)
        self.units_done += sum(units for _, _, units, _ in cases)
        if self.stream is None:
            self.done += len(cases)
            return
        if self.done + len(cases) >= self.total:
            tail = f"done in {duration(self.clock() - self.start)}"
        else:
            eta = self.eta()
            tail = "ETA ?" if eta is None else f"ETA {duration(eta)}"
        for label, seconds, _, outcome in cases:
            self.done += 1
            print(f"[{self.done}/{self.total}] {label} ... {outcome or duration(seconds)}, {tail}", file=self.stream,
                  flush=True)
