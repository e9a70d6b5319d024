"""kgqa.retrieval: each candidate generator on a tiny name list, the Retrieval over them, and the
memory's plain-data state."""
import json

import pytest

NAMES = ["Tom Hanks", "Tom Cruise", "The Matrix", "The Matrix Reloaded", "Amélie", "Spider-Man: Homecoming", "Hanks",
         "The Lord of the Rings", "Tom Hanks", "Heat", "HEAT", "Forrest Gump"]


@pytest.fixture(scope="module")
def retrieval():
    from kgqa.retrieval import Retrieval, RetrievalWarning

    with pytest.warns(RetrievalWarning, match="no encoder"):
        return Retrieval.build(NAMES)


def ents(hits):
    return [h.entity for h in hits]


def well_formed(hits, k):
    assert len(hits) <= k and len(set(ents(hits))) == len(hits)
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))


def test_build_reports_what_it_left_out(retrieval):
    from kgqa.retrieval import GENERATORS

    assert GENERATORS == ("alias", "fuzzy", "lexical", "dense", "memory")
    assert list(retrieval.generators) == ["alias", "fuzzy", "lexical", "memory"]
    assert retrieval.missing == {"dense": "no encoder given"}
    assert all(retrieval.generators[n].name == n for n in retrieval.generators)
    with pytest.raises(ValueError, match="'dense' was not built \\(no encoder given\\)"):
        retrieval.search(["x"], {"dense": 3})
    with pytest.raises(ValueError, match="unknown generator 'bm25'"):
        retrieval.search(["x"], {"bm25": 3})
    with pytest.raises(ValueError, match="k\\['alias'\\] must be a non-negative int"):
        retrieval.search(["x"], {"alias": -1})
    with pytest.raises(ValueError, match="mentions must be a sequence of strings"):
        retrieval.search("Tom Hanks", {"alias": 1})


def test_alias_exact_then_normalised(retrieval):
    alias = retrieval.generators["alias"]
    exact, norm, none = alias.search(["Tom Hanks", "heat", "Tom Hanx"], 5)
    assert ents(exact) == [0, 8] and [h.score for h in exact] == [1.0, 1.0]
    assert ents(norm) == [9, 10] and norm[0].score == 0.99
    assert none == []
    assert ents(alias.search(["Tom Hanks"], 1)[0]) == [0] and alias.search(["Tom Hanks"], 0) == [[]]


def test_alias_abbreviations(retrieval):
    from kgqa.retrieval.alias import abbreviations, as_abbreviation

    assert abbreviations("the lord of the rings") == ["tlotr", "lotr"] and abbreviations("heat") == []
    assert as_abbreviation("L.O.T.R.") == "lotr" and as_abbreviation("LOTR") == "lotr"
    assert as_abbreviation("lord rings") == "" and as_abbreviation("X") == ""
    alias = retrieval.generators["alias"]
    for m in ("LOTR", "lotr", "L.O.T.R.", "TLOTR"):
        hits = alias.search([m], 5)[0]
        assert ents(hits) == [7] and hits[0].score == 0.5
    th = alias.search(["TH"], 5)[0]  # Tom Hanks twice; The Matrix's "tm" is not it
    assert ents(th) == [0, 8] and alias.search(["TH"], 1) == [[th[0]]]


def test_fuzzy_typos_cut_and_reordered_words(retrieval):
    fuzzy = retrieval.generators["fuzzy"]
    typo, cut, order, punct, nothing = fuzzy.search(
        ["tom hanx", "lord of the rings", "matrix the", "spiderman homecoming", "zzzz"], 3)
    for hits in (typo, cut, order, punct):
        well_formed(hits, 3)
    assert ents(typo)[0] in (0, 8) and 0.0 < typo[0].score < 1.0
    assert ents(cut)[0] == 7 and ents(order)[0] == 2 and ents(punct)[0] == 5
    assert nothing == []


def test_fuzzy_shortlist_reads_the_rarest_trigrams_first():
    from kgqa.aliases import AliasIndex
    from kgqa.retrieval import FuzzyGenerator

    names = [f"the common name {i}" for i in range(300)] + ["the rarest xylophone"]
    gen = FuzzyGenerator(AliasIndex(names), shortlist=5, postings_budget=10)
    assert 300 in gen.candidates("the rarest xylophon").tolist()  # common trigrams skipped, the rare found
    assert ents(gen.search(["the rarest xylophon"], 1)[0]) == [300]


def test_lexical_shares_words(retrieval):
    lexical = retrieval.generators["lexical"]
    hanks, order, none = lexical.search(["hanks", "Reloaded Matrix", "qqq"], 4)
    well_formed(hanks, 4)
    assert set(ents(hanks)) == {0, 6, 8} and ents(hanks)[0] == 6  # the shortest name with the word first
    assert ents(order)[0] == 3
    assert none == []


def test_memory_remembers_and_forgives(retrieval):
    from kgqa.retrieval import MemoryIndex

    mem = MemoryIndex()
    assert mem.search(["Tom Hanks"], 5) == [[]]
    mem.add("Tom Hanks", 0)
    mem.add("Tom Hanks", 0)
    mem.add("Tom Hanks", 8, 0.5)
    mem.add("The Fellowship", 7)
    mem.add("Heat", 9, 1.0)
    mem.add("Heat", 9, -1.0)  # taken back
    exact, typo, other, taken = mem.search(["tom hanks", "tom hanx", "the fellowship!", "heat"], 5)
    assert ents(exact) == [0, 8] and exact[0].score == 2.0
    assert ents(typo) == [0, 8] and typo[0].score < 2.0
    assert ents(other) == [7] and taken == []
    assert len(mem) == 4
    with pytest.raises(ValueError, match="no letter or digit"):
        mem.add("!!", 1)
    with pytest.raises(ValueError, match="entity must be a non-negative int"):
        mem.add("x", -2)
    with pytest.raises(ValueError, match="reward must be a finite number"):
        mem.add("x", 1, float("nan"))


def test_memory_state_is_plain_data():
    from kgqa.retrieval import MemoryIndex

    mem = MemoryIndex(min_similarity=0.7)
    for m, e in [("Tom Hanks", 0), ("Forrest Gump", 11), ("Tom Hanks", 0)]:
        mem.add(m, e)
    state = json.loads(json.dumps(mem.state_dict()))
    back = MemoryIndex.from_state_dict(state)
    assert back.state_dict() == mem.state_dict() and back.min_similarity == 0.7
    assert ents(back.search(["forest gump"], 3)[0]) == [11]
    with pytest.raises(ValueError, match="version"):
        MemoryIndex.from_state_dict({"entries": []})
    with pytest.raises(ValueError, match=r"entries\[1\]"):
        MemoryIndex.from_state_dict({"version": 1, "entries": [["a", 1, 1.0], ["b", "x", 1.0]]})


def test_retrieval_search_per_mention_per_generator(retrieval):
    retrieval.memory.add("The Fellowship", 7)
    out = retrieval.search(["Tom Hanks", "the fellowship"], {"alias": 2, "fuzzy": 3, "lexical": 0, "memory": 1})
    assert len(out) == 2 and all(list(row) == ["alias", "fuzzy", "lexical", "memory"] for row in out)
    assert ents(out[0]["alias"]) == [0, 8] and out[0]["lexical"] == [] and out[0]["memory"] == []
    assert ents(out[1]["memory"]) == [7] and out[1]["alias"] == []
    assert len(out[1]["fuzzy"]) <= 3
    assert retrieval.search([], {"alias": 2}) == []


def test_dense_finds_names_and_caches_their_vectors(cache):
    import numpy as np
    import torch

    from kgqa.encoder import ScratchEncoder
    from kgqa.retrieval import Retrieval
    from kgqa.retrieval.dense import DenseGenerator

    torch.manual_seed(0)
    enc = ScratchEncoder.build(NAMES, dim=16)  # a real encoder over the names' tiny vocabulary
    r = Retrieval.build(NAMES, encoder=enc, generators=["dense"])
    assert list(r.generators) == ["dense"] and r.missing == {}
    dense = r.generators["dense"]
    hits = dense.search(["Forrest Gump", "The Matrix Reloaded", "heat"], 3)
    for h in hits:
        well_formed(h, 3)
    assert ents(hits[0])[0] == 11 and ents(hits[1])[0] == 3 and set(ents(hits[2])[:2]) == {9, 10}
    assert abs(hits[0][0].score - 1.0) < 1e-5  # the same text: cosine 1
    files = list(cache.glob("names-*.npy"))
    assert len(files) == 1
    vecs = np.load(files[0])
    assert vecs.shape == (len(NAMES), enc.out_dim) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    np.save(files[0], np.zeros_like(vecs))  # read back, not recomputed: a zeroed cache gives zero scores
    assert DenseGenerator.build(NAMES, enc).search(["Heat"], 1)[0][0].score == 0.0
    with torch.no_grad():
        enc.embed.weight.add_(1.0)  # other weights, another cache file
    DenseGenerator.build(NAMES, enc)
    assert len(list(cache.glob("names-*.npy"))) == 2
    approx = DenseGenerator.build(NAMES, enc, approx_above=0)  # IVF on 12 vectors (one cell)
    assert ents(approx.search(["Forrest Gump"], 2)[0])[0] == 11


def test_dense_encodes_each_mention_once_and_batches_find_what_one_mention_finds(cache):
    """DenseGenerator.search keeps its mentions' vectors: a mention searched again (the policy's
    probe, then its draw) is not encoded again, and the hits are those of a search of that mention
    alone, and of a generator without the kept vectors."""
    import torch

    from kgqa.encoder import ScratchEncoder
    from kgqa.retrieval.dense import DenseGenerator

    torch.manual_seed(0)
    enc = ScratchEncoder.build(NAMES, dim=16)
    encoded = []
    real_forward = enc.forward
    enc.forward = lambda texts: (encoded.extend(texts), real_forward(texts))[1]
    dense = DenseGenerator.build(NAMES, enc)
    encoded.clear()
    mentions = ["Forrest Gump", "heat", "tom hanks", "heat", "The Matrix Reloaded"]
    first = dense.search(mentions, 4)
    assert sorted(encoded) == sorted(set(mentions))  # each distinct mention once
    again = dense.search(["heat", "Tom Cruise"], 4)
    assert sorted(encoded) == sorted(set(mentions) | {"Tom Cruise"})
    fresh = DenseGenerator.build(NAMES, enc)
    for m, hits in zip(mentions + ["heat", "Tom Cruise"], first + again):
        (alone,) = fresh.search([m], 4)
        assert ents(hits) == ents(alone)
        assert [h.score for h in hits] == pytest.approx([h.score for h in alone], abs=1e-5)


def test_retrieval_batched_equals_one_mention_at_a_time(retrieval):
    """Every generator's search of many mentions at once gives each what it gives the mention alone."""
    mentions = ["Tom Hanks", "the felowship", "matrix the", "LOTR", "heat", "Amelie", "Spider Man", "Tom Hanks", "zzz"]
    k = {"alias": 3, "fuzzy": 5, "lexical": 4, "memory": 2}
    together = retrieval.search(mentions, k)
    for m, row in zip(mentions, together):
        (alone,) = retrieval.search([m], k)
        assert {g: ents(h) for g, h in row.items()} == {g: ents(h) for g, h in alone.items()}
        assert {g: [h.score for h in hs] for g, hs in row.items()} == {g: [h.score for h in hs] for g, hs in alone.items()}


def test_lexical_scores_are_bm25():
    import math

    from kgqa.aliases import AliasIndex
    from kgqa.retrieval import LexicalGenerator

    names = ["Tom Hanks", "Tom Cruise", "The Matrix", "Hanks", "the the man"]
    gen = LexicalGenerator(AliasIndex(names))
    n, avg = len(names), (2 + 2 + 2 + 1 + 3) / 5

    def weight(df, tf, length):  # BM25, Lucene's idf, without the constant (k1 + 1)
        return math.log(1 + (n - df + 0.5) / (df + 0.5)) * tf / (tf + 1.5 * (1 - 0.75 + 0.75 * length / avg))

    hits = gen.search(["tom hanks", "the", "the the"], 5)
    assert ents(hits[0]) == [0, 3, 1]
    assert hits[0][0].score == pytest.approx(weight(2, 1, 2) + weight(2, 1, 2), rel=1e-5)
    assert hits[0][1].score == pytest.approx(weight(2, 1, 1), rel=1e-5)
    assert ents(hits[1]) == [4, 2] and hits[1][0].score == pytest.approx(weight(2, 2, 3), rel=1e-5)
    assert hits[2][0].score == pytest.approx(2 * hits[1][0].score, rel=1e-5)  # a word said twice counts twice
    assert gen.search(["tom hanks"], 1)[0][0].entity == 0 and gen.search(["x"], 3) == [[]]
    capped = LexicalGenerator(AliasIndex(names), postings_budget=2)  # "tom" (2 names) read, then "hanks" (2) is not
    assert ents(capped.search(["hanks tom"], 5)[0]) == [0, 1]
    assert ents(capped.search(["the man"], 5)[0]) == [4]  # "man" (1) read, "the" (2) past the cap


def test_memory_past_a_full_scan_looks_up_a_trigram_shortlist(monkeypatch):
    from kgqa.retrieval import MemoryIndex, memory

    monkeypatch.setattr(memory, "SCAN_ALL_UP_TO", 5)
    mem = MemoryIndex()
    for i in range(30):
        mem.add(f"mention number {i} of {i * 7}", i)
    assert ents(mem.search(["mention numbr 12 of 84"], 3)[0])[0] == 12  # from the index, built now
    indexed = mem._indexed
    assert indexed is not None and len(indexed.names) == 30
    mem.add("zebra crossing", 99)  # since the index: scored in full, no rebuild
    assert ents(mem.search(["zebra crosing"], 3)[0]) == [99] and mem._indexed is indexed
    for i in range(30, 40):
        mem.add(f"mention number {i} of {i * 7}", i)
    assert ents(mem.search(["mention numbr 35 of 245"], 3)[0])[0] == 35 and mem._indexed is not indexed  # rebuilt
    mem.add("zebra crossing", 99, -1.0)
    assert mem.search(["zebra crossing"], 3) == [[]] and mem.search(["zebra crosing"], 3) == [[]]
