"""Operations (issue 20, kgqa.operations): count and superlative questions read, learned end to end
from answers alone on a tiny KB with release years, answered, checkpointed and evaluated per kind;
models without operations unchanged."""
import json
import random

import pytest
import torch

from kgqa import KnowledgeBase, TrainConfig, cli, read_questions, train
from kgqa import checkpoint
from kgqa.model import RigelModel, set_relations
from kgqa.operations import (ARGMAX, ARGMIN, COUNT, GATE, OPERATIONS, PATH, Attributes, OperationHead, OpOutput,
                             answer_probabilities, count_distribution, members)
from kgqa.questions import write_questions

DIRECTORS = 12
HELD_OUT = ("Director 10", "Director 11")  # never asked about in training


def _toy(d, seed=0, films=60):
    """A KB of films with a director and a release year (ties included), and per director the
    four kinds of questions; returns (kb file, train file, test file, test qtype file)."""
    rng = random.Random(seed)
    facts, by = [], {}
    for f in range(films):
        director, year = f"Director {f % DIRECTORS}", 1950 + rng.randrange(25)
        facts += [(f"Film {f}", "directed_by", director), (f"Film {f}", "release_year", str(year))]
        by.setdefault(director, []).append((year, f"Film {f}"))
    (d / "kb.txt").write_text("".join(f"{s}|{r}|{o}\n" for s, r, o in facts), encoding="utf-8")
    train_lines, test_lines, kinds = [], [], []
    for director, fs in sorted(by.items()):
        hi, lo = max(y for y, _ in fs), min(y for y, _ in fs)
        latest, earliest = ("|".join(f for y, f in fs if y == best) for best in (hi, lo))
        qs = [(f"what films did [{director}] direct\t" + "|".join(f for _, f in fs), PATH),
              (f"how many films did [{director}] direct\t{len(fs)}", COUNT),
              (f"what is the most recent film directed by [{director}]\t{latest}", ARGMAX),
              (f"what is the oldest film directed by [{director}]\t{earliest}", ARGMIN)]
        if director in HELD_OUT:
            test_lines += [q for q, _ in qs]
            kinds += [k for _, k in qs]
        else:
            train_lines += [q for q, _ in qs]
    for f in range(films):
        train_lines.append(f"who directed [Film {f}]\tDirector {f % DIRECTORS}")
    for name, lines in (("train.txt", train_lines), ("test.txt", test_lines), ("test_qtype.txt", kinds)):
        (d / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d / "kb.txt", d / "train.txt", d / "test.txt", d / "test_qtype.txt"


def _train_toy(kb, train_path, epochs):
    """A scratch-encoder model of one hop trained on ``train_path``, on one thread: a tiny model
    trains fastest so (on a shared 2-core machine 1 s against 9 s with two)."""
    qs, _ = read_questions(train_path, kb)
    cfg = TrainConfig(hops=1, encoder="scratch", epochs=epochs, lr=1e-2, seed=0, valid_fraction=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(kb, qs, [], cfg, progress=False, log=lambda s: None)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """(folder, KB, the QA trained on the toy's questions, test questions with kinds); the model
    saved in folder/model."""
    d = tmp_path_factory.mktemp("ops")
    kb_path, train_path, test_path, qtype_path = _toy(d)
    kb = KnowledgeBase.load(kb_path, use_cache=False)
    # 15 epochs: 10 answered every held-out question of seeds 0-4 (8 did not)
    qa = _train_toy(kb, train_path, epochs=15)
    checkpoint.save(qa, d / "model", str(kb_path))
    test, _ = read_questions(test_path, kb, qtype_path)
    return d, kb, qa, test


def test_count_answers_are_read_whether_or_not_an_entity_has_the_name(write, cache):
    kb_path = write("kb.txt", "A|r|B\nA|r|3\nC|r|B\n")
    kb = KnowledgeBase.load(kb_path)
    qs, report = read_questions(write("q.txt", "how many [A]\t2\nwhat [A]\t3\nwhat [C]\tB\nhow many [C]\t1.5\n"), kb)
    assert [(q.count, [kb.entities[a] for a in q.answers]) for q in qs] == [(2, []), (3, ["3"]), (None, ["B"])]
    assert report.counts == 2 and report.count_only == 1 and report.no_answer_in_kb == 1  # "1.5" is no count
    assert "2 count answers (1 of them numerals no entity is named)" in report.summary()
    write_questions(kb_path.parent / "out.txt", qs, kb)
    written = (kb_path.parent / "out.txt").read_text(encoding="utf-8").splitlines()
    assert written[:2] == ["how many [A]\t2", "what [A]\t3"]


def test_members_gate_and_count_distribution():
    x = torch.tensor([[1.0, 0.6, 0.4, 0.001], [0.2, 0.0, 0.0, 0.0]], requires_grad=True)
    m = members(x)
    assert torch.equal(m[1], x[1].detach())  # a row of one member keeps it, however small
    assert torch.allclose(m[0], torch.tensor([1.0, 0.6, 0.0, 0.0]))  # 0.4 < GATE * 1.0, and the leak
    assert GATE == 0.5
    m.sum().backward()
    assert x.grad.tolist()[0] == [1.0, 1.0, 0.0, 0.0]
    dist = count_distribution(torch.tensor([2.9, 0.2, 30.0]), 10)
    assert dist.argmax(1).tolist() == [3, 0, 10] and torch.allclose(dist.sum(1), torch.ones(3))


def test_whole_members_count_each_member_once_out_of_training():
    head = OperationHead(4, 0, 10)
    sets = torch.tensor([[[1.0, 0.6, 0.4, 0.0]]], requires_grad=True)  # one hop: members 1.0 and 0.6
    attention = torch.ones(1, 1)
    h = torch.randn(1, 4)
    assert head(h, sets, attention, None).hop_counts.tolist() == [[pytest.approx(1.6)]]
    head.whole_members = True
    assert head(h, sets, attention, None).hop_counts.tolist() == [[pytest.approx(1.6)]]  # training: the weights
    head.eval()
    out = head(h, sets, attention, None)
    assert out.hop_counts.tolist() == [[2.0]] and int(out.number[0]) == 2


@pytest.mark.parametrize("attention,number", [((0.0, 1.0), 4), ((0.3, 0.7), 4), ((0.7, 0.3), 3)])
def test_a_count_counts_every_entity_its_hop_reaches_once(write, attention, number):
    """Actors of a director's three films: A1 plays in all three, A2, A3 and A4 in one each. The path's
    scores weigh A1 three times the others (three paths); the count reads the set, where each
    reached actor weighs 1: four. (With the path's scaled scores the gate left the three others
    out: a count of 1.) With the attention on both hops, the count is the attended hop's: the
    three films or the four actors, not a count scaled by the attention (0.7 x 3 films = 2.1)."""
    facts = ["F1|directed_by|D", "F2|directed_by|D", "F3|directed_by|D", "F1|starred_actors|A1",
             "F2|starred_actors|A1", "F3|starred_actors|A1", "F1|starred_actors|A2", "F2|starred_actors|A3",
             "F3|starred_actors|A4", "F1|release_year|2001", "F2|release_year|2002", "F3|release_year|2003"]
    kb = KnowledgeBase.load(write("kb.txt", "\n".join(facts) + "\n"), use_cache=False)
    model = RigelModel(8, kb.num_relations, hops=2, attributes=["release_year"], max_count=10, restrict_hops=False)
    path = [kb.relations.index("directed_by~inv"), kb.relations.index("starred_actors")]

    def head_logits(q):  # a sure two-hop path: directed_by~inv, then starred_actors
        logits = torch.full((q.shape[0], 2, model.branches, kb.num_relations), float("-inf"))
        logits[:, 0, :, path[0]] = logits[:, 1, :, path[1]] = 0.0
        return logits, torch.tensor([attention]).expand(q.shape[0], 2)

    model.head_logits = head_logits
    out = model(torch.randn(1, 8), [[kb.entity_ids["D"]]], kb.sparse,
                attributes=Attributes.of(kb, ["release_year"], kb.sparse))
    actors = [kb.entity_ids[a] for a in ("A1", "A2", "A3", "A4")]
    if attention[0] == 0:
        assert out.scores[0, actors].tolist() == pytest.approx([1.0, 1 / 3, 1 / 3, 1 / 3])  # the path's ranking
    assert out.ops.hop_counts[0].tolist() == pytest.approx([3.0, 4.0])  # the films, then the actors
    assert float(out.ops.count[0]) == pytest.approx(3 * attention[0] + 4 * attention[1])
    assert int(out.ops.number[0]) == number


def test_a_superlative_explains_a_multi_answer_set_worse_than_the_path():
    """The coverage factor of answer_probabilities: argmin's one member is an answer, but not all."""
    scores = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    answers = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    extreme = torch.stack([torch.tensor([[1.0, 0.0, 0.0, 0.0]])] * 2, 1)
    ops = OpOutput(torch.full((1, 4), 0.25), torch.tensor([3.0]), count_distribution(torch.tensor([3.0]), 5), extreme,
                   torch.ones(1, 1))
    p = answer_probabilities(ops, scores, answers, torch.tensor([-1]))
    assert p[0, 0] > 0.99 and p[0, 2] < 0.34 and p[0, 1] == 0
    p = answer_probabilities(ops, scores, torch.zeros(1, 4), torch.tensor([3]))
    assert p[0, 1] == ops.count_dist[0, 3] and p[0, 0] == 0


def test_operations_are_learned_from_answers_alone(toy):
    """Held-out directors: counts, the most recent and the oldest film, exact, and the operation
    chosen per kind (no operation label was given)."""
    _, kb, qa, test = toy
    assert qa.operations and qa.model.dims["attributes"] == ["release_year"]
    scores, out = qa.predict(test, calibrated=False)
    chosen = [OPERATIONS[i] for i in out.ops.chosen.tolist()]
    assert chosen == [q.qtype for q in test]
    numbers = qa.numbers(out)
    for q, n, row in zip(test, numbers, scores):
        if q.qtype == COUNT:
            assert n == q.count and not q.answers
        else:
            assert n is None and int(row.argmax()) in q.answers
    result = qa.evaluate(test)
    assert {k: v["hits@1"] for k, v in result["per_qtype"].items()} == {PATH: 1.0, COUNT: 1.0, ARGMAX: 1.0, ARGMIN: 1.0}
    assert result["f1"] == 1.0


def test_ask_json_gives_a_count_as_its_numeral_and_the_operation(toy, capsys):
    d, kb, qa, test = toy
    q = next(q for q in test if q.qtype == COUNT)
    rc = cli.main(["ask", "--model", str(d / "model"), "--json", "--paths", "1", q.text])
    assert rc == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["operation"] == COUNT and r["answers"][0]["entity"] == str(q.count)
    assert len(r["counted"]) == q.count and set(r["operations"]) == set(OPERATIONS)
    assert r["answers"][0]["evidence"][0]["steps"][0]["relation"] == "directed_by~inv"
    text = cli.format_response(qa.ask(next(q for q in test if q.qtype == ARGMAX).text))
    assert "operation: argmax" in text


def test_eval_reports_hits_per_kind_from_a_qtype_file(toy, capsys):
    d, *_ = toy
    rc = cli.main(["eval", "--model", str(d / "model"), "--questions", str(d / "test.txt"), "--qtype",
                   str(d / "test_qtype.txt"), "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {k: (v["n"], v["hits@1"]) for k, v in result["per_qtype"].items()} == {
        k: (len(HELD_OUT), 1.0) for k in OPERATIONS}


def test_checkpoint_keeps_the_operations(toy):
    d, kb, qa, test = toy
    loaded = checkpoint.load(d / "model")
    assert loaded.model.dims == qa.model.dims
    a, out_a = qa.predict(test)
    b, out_b = loaded.predict(test)
    assert torch.equal(a, b) and loaded.numbers(out_b) == qa.numbers(out_a)


def test_a_model_without_operations_and_an_older_checkpoint_load_and_answer_as_before(trained_demo, demo, tmp_path):
    """The demo's path questions have no count answer: "auto" trains no operations (nothing in the
    checkpoint); a checkpoint written before operations (no "operations" in "train") loads the same."""
    kb, _, test_qs = demo
    assert not trained_demo.operations and "attributes" not in trained_demo.model.dims
    checkpoint.save(trained_demo, tmp_path / "m", None)
    config = json.loads((tmp_path / "m" / "config.json").read_text(encoding="utf-8"))
    assert "attributes" not in config["model"] and config["train"]["operations"] == "auto"
    del config["train"]["operations"]  # as written before issue 20
    (tmp_path / "m" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    loaded = checkpoint.load(tmp_path / "m", kb)
    assert loaded.cfg.operations == "off" and loaded.model.operation_head is None
    qs = test_qs[:50]
    a, out = trained_demo.predict(qs)
    b, out_b = loaded.predict(qs)
    assert torch.equal(a, b) and out_b.ops is None
    r = loaded.ask(qs[0].text)
    assert r.operation is None and r.to_dict()["operation"] is None


def test_a_checkpoint_with_half_the_operations_is_refused(toy, tmp_path):
    d, *_ = toy
    config = json.loads((d / "model" / "config.json").read_text(encoding="utf-8"))
    del config["model"]["max_count"]
    with pytest.raises(checkpoint.CheckpointError, match="model.max_count: missing"):
        checkpoint.check_config(config, "config.json")
    config["model"]["max_count"] = 20
    config["model"]["attributes"] = ["budget"]
    with pytest.raises(checkpoint.CheckpointError, match="model.attributes: \"budget\" is not one of kb.relations"):
        checkpoint.check_config(config, "config.json")


def _two_entity_counts(d, seed=0, directors=12, genres=3):
    """A KB of films with a director and a genre; "what films did [D] direct", "what genre is [F]"
    and counts of a director's films, and 2-entity counts of a director's films in a genre with
    the mentions in both orders ("... [Director] ... [Genre]" and "... [Genre] ... [Director]").
    No question follows a genre to its films but those counts. The last three directors are held
    out; returns (kb file, train file, test file)."""
    rng = random.Random(seed)
    facts, by, f = [], {}, 0
    for i in range(directors):
        for _ in range(rng.randrange(4, 12)):
            genre = f"Genre {rng.randrange(genres)}"
            facts += [(f"Film {f}", "directed_by", f"Director {i}"), (f"Film {f}", "has_genre", genre)]
            by.setdefault(f"Director {i}", []).append((f"Film {f}", genre))
            f += 1
    (d / "kb.txt").write_text("".join(f"{s}|{r}|{o}\n" for s, r, o in facts), encoding="utf-8")
    train_lines, test_lines = [], []
    for i, (director, fs) in enumerate(sorted(by.items(), key=lambda kv: int(kv[0].split()[1]))):
        qs = [f"what films did [{director}] direct\t" + "|".join(x for x, _ in fs),
              f"how many films did [{director}] direct\t{len(fs)}"]
        for genre in sorted({g for _, g in fs}):
            n = sum(g == genre for _, g in fs)
            qs += [f"how many films did [{director}] direct in the genre [{genre}]\t{n}",
                   f"how many [{genre}] films were directed by [{director}]\t{n}"]
        (test_lines if i >= directors - 3 else train_lines).extend(qs)
    train_lines += [f"what genre is [{x}]\t{g}" for fs in by.values() for x, g in fs]
    for name, lines in (("train.txt", train_lines), ("test.txt", test_lines)):
        (d / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d / "kb.txt", d / "train.txt", d / "test.txt"


def test_without_restrict_hops_only_the_first_hop_of_two_topics_is_restricted(write):
    kb = KnowledgeBase.load(write("kb.txt", "F|directed_by|D\nF|has_genre|G\nH|has_genre|G\n"), use_cache=False)
    one = torch.eye(kb.num_entities)[[kb.entity_ids[n] for n in ("D", "G", "F")]]  # an entity: a set of one
    rows = set_relations(kb.sparse, one)
    assert [[kb.relations[r] for r in row.nonzero().view(-1).tolist()] for row in rows] == [
        ["directed_by~inv"], ["has_genre~inv"], ["directed_by", "has_genre"]]
    # two branches, hops 2: only the first hop is restricted, each branch by its own entity
    model = RigelModel(8, kb.num_relations, hops=2, restrict_hops=False)
    q = torch.randn(1, 8)
    rel = model(q, [[kb.entity_ids["D"], kb.entity_ids["G"]]], kb.sparse).relations
    free, _ = model.heads(q)
    assert torch.equal(rel[0, 0] > 0, rows[:2]) and torch.equal(rel[0, 1], free[0, 1])
    rel = model(q, [[kb.entity_ids["D"]]], kb.sparse).relations  # one topic: nothing is restricted
    torch.testing.assert_close(rel, free)


def test_two_entity_counts_are_learned_whichever_mention_comes_first(tmp_path):
    """The genre reaches its films only in 2-entity counts. Branch 0 takes the first mention and is
    every 1-entity question's branch too: before its first hop was restricted to the relations of
    its topic entity (kgqa.model.RigelModel.hop_relations), "how many [Genre] films were
    directed by [Director]" followed directed_by~inv from the genre (counting 0) and never learned
    otherwise: Hits@1 0 on those, in training too (MetaQA: docs/results.md "Operations")."""
    kb_path, train_path, test_path = _two_entity_counts(tmp_path)
    kb = KnowledgeBase.load(kb_path, use_cache=False)
    qa = _train_toy(kb, train_path, epochs=12)
    test, _ = read_questions(test_path, kb)
    genre_first = [q for q in test if q.text.startswith("how many [Genre")]
    assert genre_first and all(len(q.topics) == 2 for q in genre_first)
    _, out = qa.predict(genre_first, calibrated=False)
    assert [kb.relations[r] for r in out.relations[:, 0, 0].argmax(1).tolist()] == ["has_genre~inv"] * len(genre_first)
    assert qa.numbers(out) == [q.count for q in genre_first]
    two = [q for q in test if len(q.topics) == 2]
    assert qa.evaluate(two)["hits@1"] == 1.0


@pytest.mark.parametrize("intersection", [True, False])
def test_learned_entities_take_the_operations_per_hop(demo, fake_links, intersection):
    """forward_learned's operations: the sets of every hop (the first branch alone, and the pair by
    P(two entities)), mixed by the attention of what the model reads; gradients reach the
    relations and the resolver through them."""
    from kgqa.entity_facts import EntityFacts
    from kgqa.link_batch import collate

    kb = demo[0]
    texts = ["how many films did Grace Brandt act in", "what is the latest film of Grace Brandt and Jonas Quint",
             "nothing here names anything"]
    facts = EntityFacts(kb)
    lb = collate(fake_links(kb, texts), facts)
    model = RigelModel(8, kb.num_relations, hops=2, entities="learned", attributes=["release_year"], max_count=10)
    out = model.forward_learned(lb, facts, kb.sparse, intersection,
                                attributes=Attributes.of(kb, ["release_year"], kb.sparse))
    ops = out.ops
    assert ops.count_dist.shape == (3, 11) and ops.extreme.shape == (3, 2, kb.num_entities)
    torch.testing.assert_close(ops.count_dist.sum(1), torch.ones(3))
    assert torch.isfinite(ops.count).all() and (ops.count >= 0).all() and float(ops.count[2].detach()) == 0  # no span
    (ops.count_dist[:2, 3].sum() + ops.extreme[:2].sum()).backward()
    for name, p in [("span", model.resolver.span_scorer[0].weight), ("relations", model.relation_head.weight)]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name

