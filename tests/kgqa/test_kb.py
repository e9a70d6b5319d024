"""kgqa.kb: KnowledgeBase loading (MetaQA and tab-separated files), inverses, the cache, and
malformed lines named by file and line."""
import pytest
import torch

import kgqa_kernels as kk
from kgqa import KBFormatError, KnowledgeBase


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
