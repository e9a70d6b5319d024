"""experiments/noisy_mentions.py: the kinds (kgqa.mention_noise, tested in
tests/kgqa/test_mention_noise.py) come in equal shares, and the same seed gives the same benchmark."""
import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "experiments", "noisy_mentions.py")


@pytest.fixture(scope="module")
def noisy():
    spec = importlib.util.spec_from_file_location("noisy_mentions", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["noisy_mentions"] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


NAMES = ["The Lord of the Rings", "Tom Hanks", "Amélie", "Spider-Man: Homecoming", "Dame May Whitty", "1984",
         "Forrest Gump", "Schindler's List", "Hans Erik Dyvik Husby", "Léon: The Professional", "Heat",
         "Ocean's Eleven"]
LINES = [f"what films did [{n}] star in\tA|B" if i % 2 else f"[{n}] is about what\tC" for i, n in enumerate(NAMES * 3)]


def test_benchmark_items_equal_shares_and_deterministic(noisy):
    items = noisy.make_noisy(LINES, seed=0, salt="1-hop")
    counts = {k: sum(it.kind == k for it in items) for k in noisy.KINDS}
    assert len(set(counts.values())) == 1 and counts["abbreviation"] > 0, counts
    assert len({it.line for it in items}) == len(items)  # one kind a question
    for it in items:
        src = LINES[it.line].split("\t")
        assert it.clean == src[0].replace("[", "").replace("]", "") and it.answers == src[1]
        assert it.clean[it.start : it.clean_end] == it.gold and it.noisy[it.start : it.noisy_end] == it.mention
        assert it.noisy[: it.start] == it.clean[: it.start] and it.noisy[it.noisy_end :] == it.clean[it.clean_end :]
        assert it.mention != it.gold and noisy.eligible(it.kind, it.gold)
    assert noisy.make_noisy(LINES, seed=0, salt="1-hop") == items
    others = [noisy.make_noisy(LINES, seed=s, salt="1-hop") for s in (1, 2, 3)]
    assert any(o != items for o in others)
    with pytest.raises(ValueError, match="per-kind 99"):
        noisy.make_noisy(LINES, seed=0, per_kind=99)


def test_cli_writes_aligned_files(noisy, tmp_path):
    src = tmp_path / "metaqa" / "1-hop"
    src.mkdir(parents=True)
    (src / "qa_dev.txt").write_text("\n".join(LINES) + "\n", encoding="utf-8")
    runs = []
    for out in ("a", "b"):
        p = subprocess.run([sys.executable, SCRIPT, str(tmp_path / "metaqa"), "--hops", "1", "--seed", "0", "--out",
                            str(tmp_path / out)], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        runs.append({f: (tmp_path / out / "1-hop" / f).read_text(encoding="utf-8")
                     for f in ("noisy.txt", "noisy_meta.tsv", "clean.txt", "clean_meta.tsv")})
    assert runs[0] == runs[1]
    noisy_q = runs[0]["noisy.txt"].splitlines()
    meta = [line.split("\t") for line in runs[0]["noisy_meta.tsv"].splitlines()]
    clean_meta = [line.split("\t") for line in runs[0]["clean_meta.tsv"].splitlines()]
    assert len(noisy_q) == len(meta) == len(clean_meta) == len(runs[0]["clean.txt"].splitlines()) > 0
    for q, (kind, mention, start, end, gold), c in zip(noisy_q, meta, clean_meta):
        assert "[" not in q and q[int(start) : int(end)] == mention and kind in noisy.KINDS
        assert c[0] == kind and c[1] == c[4] == gold
    p = subprocess.run([sys.executable, SCRIPT, str(tmp_path / "none"), "--out", str(tmp_path / "c")],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "no file" in p.stderr
