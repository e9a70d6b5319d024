"""kgqa.kb: KnowledgeBase loading (MetaQA and tab-separated files), inverses, the cache (keyed by
content; an optimisation only, skipped with one warning where it cannot be used), and malformed
lines named by file and line."""
import os
import warnings

import pytest
import torch

import kgqa_kernels as kk
from kgqa import KBFormatError, KnowledgeBase
from kgqa.kb import CacheWarning


def test_kb_loads_metaqa_and_tsv_with_inverses(write, cache):
    metaqa = write("kb.txt", "Heat|directed_by|Michael Mann\nHeat|starred_actors|Al Pacino\n\nAli|directed_by|Michael Mann\n")
    tsv = write("kb.tsv", "Heat\tdirected_by\tMichael Mann\nHeat\tstarred_actors\tAl Pacino\nAli\tdirected_by\tMichael Mann\n")
    for path in (metaqa, tsv):
        kb = KnowledgeBase.load(path)
        assert kb.entities == ["Heat", "Michael Mann", "Al Pacino", "Ali"]
        assert kb.relations == ["directed_by", "starred_actors", "directed_by~inv", "starred_actors~inv"]
        assert kb.sparse.num_facts == 6  # every fact in both directions
        x = torch.zeros(1, 4)
        x[0, kb.entity_ids["Michael Mann"]] = 1
        r = torch.zeros(1, 4)
        r[0, kb.relation_ids["directed_by~inv"]] = 1
        films = kk.follow(x, r, kb.sparse)[0]
        assert {kb.entities[i] for i in films.nonzero().flatten().tolist()} == {"Heat", "Ali"}


def test_kb_cache_round_trip(tmp_path, write, cache):
    path = write("kb.txt", "a|r|b\nb|s|c\n")
    first = KnowledgeBase.load(path)
    files = list(cache.glob("*.safetensors"))
    assert len(files) == 1
    second = KnowledgeBase.load(path)
    assert second.entities == first.entities and torch.equal(second.triples, first.triples)
    files[0].write_bytes(b"garbage")  # a broken cache is rebuilt, never trusted
    assert KnowledgeBase.load(path).entities == first.entities
    path.write_text("a|r|b\nb|s|c\nc|r|d\n")  # a changed file misses the cache
    assert KnowledgeBase.load(path).num_entities == 4


def test_malformed_kb_lines_name_file_and_line(tmp_path, write, cache):
    path = write("kb.txt", "a|r|b\na|r\nc|r|d\n|r|e\n")
    with pytest.raises(KBFormatError, match=r"kb.txt:2: expected 3 fields"):
        KnowledgeBase.load(path)
    kb = KnowledgeBase.load(path, on_error="skip")
    assert kb.num_entities == 4 and len(kb.report.skipped) == 2
    assert "kb.txt:4: empty subject" in kb.report.skipped[1]
    with pytest.raises(FileNotFoundError):
        KnowledgeBase.load(tmp_path / "missing.txt")
    with pytest.raises(KBFormatError, match="no facts"):
        KnowledgeBase.load(write("empty.txt", "\n\n"))


def test_a_kb_edited_in_place_misses_the_cache(write, cache):
    path = write("kb.txt", "Heat|directed_by|Michael Mann\n")
    assert KnowledgeBase.load(path).entities == ["Heat", "Michael Mann"]
    st = path.stat()
    path.write_text("Heat|directed_by|Michael Bay!\n")  # same size, and the same mtime put back
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    assert KnowledgeBase.load(path).entities == ["Heat", "Michael Bay!"]
    assert len(list(cache.glob("*.safetensors"))) == 2


@pytest.mark.parametrize("where", ["KGQA_CACHE is a file", "HOME is a file"])
def test_an_unusable_cache_is_skipped_with_one_warning(tmp_path, write, monkeypatch, where):
    path = write("kb.txt", "a|r|b\nb|s|c\n")
    blocker = write("not-a-folder", "")
    if where == "HOME is a file":
        monkeypatch.delenv("KGQA_CACHE", raising=False)
        monkeypatch.setenv("HOME", str(blocker))
    else:
        monkeypatch.setenv("KGQA_CACHE", str(blocker))
    with pytest.warns(CacheWarning, match=f"KB cache {blocker}.* not used .*set KGQA_CACHE to a writable folder"):
        kb = KnowledgeBase.load(path)
    assert kb.entities == ["a", "b", "c"] and kb.triples.tolist() == [[0, 0, 1], [1, 1, 2]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning a folder: the second load is silent
        assert KnowledgeBase.load(path).entities == ["a", "b", "c"]
    assert blocker.read_text() == ""
