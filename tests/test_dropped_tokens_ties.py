"""experiments/dropped_tokens_ties.py: the ceilings docs/results.md "What bounds the noisy target"
cites, on a KB small enough to count them by hand."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "experiments", "dropped_tokens_ties.py")


def test_ceilings_with_and_without_the_kinds_rule(tmp_path):
    # "Hanks" holds a word of three actors; the band has the most facts, but no dropped-token draw
    # makes "Hanks" of "Hanks Brothers Band", and two of Tom Hanks' three draws do (Colin Hanks: one).
    facts = ["Film A|starred_actors|Tom Hanks", "Film B|starred_actors|Tom Hanks", "Film C|starred_actors|Colin Hanks"]
    facts += [f"Film E{i}|starred_actors|Hanks Brothers Band" for i in range(5)]
    (tmp_path / "kb.txt").write_text("\n".join(facts) + "\n", encoding="utf-8")
    # "Colin" names one entity: only Colin Hanks' draws make it.
    (tmp_path / "meta.tsv").write_text("dropped_tokens\tHanks\t15\t20\tTom Hanks\n"
                                       "dropped_tokens\tColin\t15\t20\tColin Hanks\n"
                                       "typo\tTom Hank\t15\t23\tTom Hanks\n", encoding="utf-8")
    (tmp_path / "q.txt").write_text("what films did Hanks star in\tFilm A|Film B\n"
                                    "what films did Colin star in\tFilm C\n"
                                    "what films did Tom Hank star in\tFilm A|Film B\n", encoding="utf-8")
    p = subprocess.run([sys.executable, SCRIPT, "kb.txt", "meta.tsv", "--questions", "q.txt", "--qtypes", "types.txt"],
                       cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    assert p.returncode == 0, p.stderr
    words, rule = [line for line in p.stdout.splitlines() if line.startswith("dropped_tokens")][:2]
    # Holding its words: for "Hanks" the band has the most facts; its vote ties 8 answers, 2 of
    # them right (0.25); "Colin" holds one name's words (1).
    assert "could stand for: 50.0%" in words and "relations: 50.0%" in words and "right: 62.5%" in words
    assert "gold entity: 100.0%" in rule and "right: 100.0%" in rule and "names one entity: 1" in rule
    labels = (tmp_path / "types.txt").read_text(encoding="utf-8").splitlines()
    assert labels == ["dropped_tokens:several", "dropped_tokens:one", "typo"]
