"""The files of a benchmark run, kept current while it runs: an interrupted run keeps what it
measured."""
from __future__ import annotations

import json
import os
from typing import Optional

from .report import markdown, plot
from .runner import finished

JSONL, JSON, MD, PNG = "results.jsonl", "results.json", "results.md", "results.png"


def save_json(result: dict, path: str) -> None:
    """Written to a temporary file and renamed: a reader never sees half a file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, path)


def _save_text(text: str, path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def finished_only(result: dict) -> dict:
    """The result with only its final records (measured or skipped), as the files show it."""
    return dict(result, records=[r for r in result["records"] if finished(r)])


class ResultFiles:
    """results.jsonl gains each case's record (one JSON object a line) as soon as the case is done;
    results.json and results.md are rewritten from every case done so far after each one;
    results.png is drawn by finish(), at the end or after an interruption (drawing takes seconds)."""

    def __init__(self, out: str):
        os.makedirs(out, exist_ok=True)
        self.out = out
        self.result: Optional[dict] = None
        open(self.path(JSONL), "w").close()  # this run's cases only

    def path(self, name: str) -> str:
        return os.path.join(self.out, name)

    def case(self, result: dict, record: dict) -> None:
        """Called with each finished record (runner.run_suite's on_case)."""
        self.result = result
        with open(self.path(JSONL), "a") as f:
            f.write(json.dumps(record) + "\n")
        view = finished_only(result)
        save_json(view, self.path(JSON))
        _save_text(markdown(view), self.path(MD))

    def finish(self, result: Optional[dict] = None, interrupted: Optional[str] = None) -> list:
        """The final results.json, results.md and results.png; interrupted: why the run stopped
        early, stated in the files. Returns (what, path) for each file written, and
        ("no plot", reason) where none was drawn."""
        result = result if result is not None else self.result
        if result is None:
            return []
        view = finished_only(result)
        if interrupted:
            view["interrupted"] = interrupted
        save_json(view, self.path(JSON))
        return [("results", self.path(JSON))] + write_reports(view, self.out)


def write_reports(result: dict, out: str) -> list:
    """results.md and results.png of a result dict (also `kgqa-bench --render`)."""
    _save_text(markdown(result), os.path.join(out, MD))
    written = [("table", os.path.join(out, MD))]
    drawn, why = plot(result, os.path.join(out, PNG))
    written.append(("plot", os.path.join(out, PNG)) if drawn else ("no plot", why))
    return written
