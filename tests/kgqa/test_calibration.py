"""kgqa.calibration: the answer sets and abstentions a Calibration selects, what fit chooses on
validation questions, the answer-type restriction, and no answer for a question about something
the KB does not hold."""
import random
from dataclasses import replace

import pytest
import torch

import kgqa_kernels as kk
from kgqa import KnowledgeBase
from kgqa.batching import split
from kgqa.calibration import (Calibration, _abstain_threshold, _answer_threshold, _f1_at, _Row, _thresholds, confidence,
                              fit, relation_words, words)
from kgqa.metrics import F1_THRESHOLD, answer_set_f1, indicator, precision_at_coverage, set_f1
from kgqa.questions import Question, parse_question

INF = float("inf")
SCORES = torch.tensor([[0.9, 0.6, 0.2, -INF], [0.3, 0.1, 0.0, 0.0], [0.0, 0.0, 0.0, -INF]])


def test_default_rule_is_the_old_f1_set():
    # at least 0.5, else the top one; a row nothing reaches (all 0 or excluded) abstains
    assert Calibration().select(SCORES) == [[0, 1], [0], []]


def test_the_default_selection_scores_as_set_f1_did():
    g = torch.Generator().manual_seed(1)
    scores = torch.rand(40, 30, generator=g) ** 3
    scores[:, :3] = -INF  # excluded entities
    answers = [random.Random(i).sample(range(3, 30), 1 + i % 5) for i in range(40)]
    chosen = Calibration().select(scores)
    expected = set_f1(scores, indicator(answers, 30, "cpu")).tolist()
    assert [answer_set_f1(c, a) for c, a in zip(chosen, answers)] == pytest.approx(expected)
    assert all(c == sorted(c, key=lambda e: -float(scores[b, e])) for b, c in enumerate(chosen))  # best first


def test_thresholds_pick_and_refusals_say_why():
    assert Calibration(answer_threshold=0.15).select(SCORES) == [[0, 1, 2], [0], []]
    # A threshold at 0 (a steep fitted map underflows to it) never answers with what scores under
    # SCORE_FLOOR: not every entity of the KB
    assert Calibration(answer_threshold=0.0).select(SCORES) == [[0, 1, 2], [0, 1], []]
    assert Calibration(answer_threshold=0.0, slope=50.0, bias=-40.0).select(SCORES) == [[0, 1, 2], [0, 1], []]
    cal = Calibration(abstain_below=0.6)
    assert cal.refusal(0.7, []) is None and "0.500" in cal.refusal(0.5, [])
    assert "budget" in cal.refusal(0.9, ["budget"])
    known = Calibration(known_words=("actor", "films", "who"))
    assert known.unknown_words("who are the actors of [X]") == [] and known.unknown_words("list me the film") == []
    assert known.unknown_words("who produced [X]") == ["produced"] and Calibration().unknown_words("who produced [X]") == []


def test_confidence_multiplies_the_best_relations_along_the_path():
    rel = torch.zeros(2, 2, 1, 3)
    rel[0, :, 0, 0] = 1.0  # sure at both hops
    rel[1, 0, 0] = torch.tensor([0.5, 0.3, 0.2])
    rel[1, 1, 0] = torch.tensor([0.1, 0.8, 0.1])
    att = torch.tensor([[0.0, 1.0], [0.25, 0.75]])
    assert confidence(rel, att).tolist() == pytest.approx([1.0, 0.25 * 0.5 + 0.75 * 0.5 * 0.8])


def _confident(right):
    """Rows with confidence 1.0, 0.99, ... in order, each right or wrong."""
    rows = [_row([0.9], [r], n_gold=1) for r in right]
    for i, r in enumerate(rows):
        r.confidence = 1.0 - 0.01 * i
    return rows


def test_the_abstention_threshold_reaches_the_target_precision():
    # six right, two wrong, then two right that the model is least sure of: answering the six most
    # confident is the only way to precision 0.95 (6/7 is 0.86), and 60% is enough coverage
    rows = _confident([True] * 6 + [False] * 2 + [True] * 2)
    threshold, why = _abstain_threshold(rows, 0.95)
    assert [r.confidence >= threshold for r in rows] == [True] * 6 + [False] * 4 and "60.0% coverage" in why
    assert _abstain_threshold(rows, 0.8) == (0.0, "")  # 8 of 10 right: answer them all
    # no threshold reaches 0.95 answering at least half: none
    threshold, why = _abstain_threshold(_confident([True, False] * 5), 0.95)
    assert "no confidence threshold reaches precision 0.95" in why and threshold == 0


def test_the_probability_map_keeps_order_zero_and_excluded():
    cal = Calibration(slope=3.0, bias=2.0)
    p = cal.probability(SCORES)
    assert p[0, 3] == -INF and p[2, 0] == 0 and bool((p[0, :3].diff() < 0).all())
    assert float(p[1, 0]) == pytest.approx(float(torch.sigmoid(3 * torch.logit(torch.tensor(0.3)) + 2)))
    # thresholds are on the probability: raw 0.2 maps to 0.65, an answer at 0.5
    assert float(Calibration(bias=2.0).probability(torch.tensor([[0.2]]))[0, 0]) == pytest.approx(0.65, abs=0.01)
    assert Calibration(bias=2.0).select(SCORES) == [[0, 1, 2], [0], []]


def test_round_trip_and_old_dicts():
    c = Calibration(0.25, 0.1, 0.5, 2.0, -1.0, ("budget", "film"), 30)
    assert Calibration.from_dict(c.to_dict()) == c
    assert Calibration.from_dict({"answer_threshold": 0.3}) == Calibration(answer_threshold=0.3)
    with pytest.raises(ValueError, match="'treshold'"):
        Calibration.from_dict({"treshold": 0.3})


def _row(scores, gold, n_gold=None):
    s = torch.tensor(scores, dtype=torch.float64)
    order = s.argsort(descending=True)
    g = torch.tensor(gold)[order]
    return _Row(s[order], g, torch.ones(len(s), dtype=torch.float64), int(sum(gold)) if n_gold is None else n_gold, False)


def test_fit_picks_the_threshold_that_maximises_answer_set_f1():
    # The second answer of q1 scores 0.4 and q2's non-answer 0.2: every threshold in (0.2, 0.4]
    # gets both sets right; the old 0.5 misses q1's second answer, 0.15 takes q2's non-answer.
    rows = [_row([0.9, 0.4, 0.1], [True, True, False]), _row([0.8, 0.2], [True, False])]
    t, f1 = _answer_threshold(rows)
    assert 0.2 < t <= 0.4 and f1 == pytest.approx(1.0)
    assert float(_f1_at(rows, torch.tensor([0.5], dtype=torch.float64))) == pytest.approx((2 / 3 + 1) / 2)
    scores = torch.tensor([[0.9, 0.4, 0.1], [0.8, 0.2, 0.0]])
    assert Calibration(answer_threshold=t).select(scores) == [[0, 1], [0]]


def test_the_chosen_threshold_is_the_best_of_every_threshold():
    rng = random.Random(0)
    rows = []
    for _ in range(50):
        n = rng.randint(1, 12)
        scores = [rng.random() for _ in range(n)]
        gold = [rng.random() < s for s in scores]  # higher scores are answers more often
        rows.append(_row(scores, gold, n_gold=sum(gold) + rng.randint(0, 1)))  # some answers no candidate reaches
    t, f1 = _answer_threshold(rows)
    # brute force: every distinct score as a threshold ("at least it"), and just above the highest
    every = sorted({float(s) for r in rows for s in r.scores} | {1.0})
    brute = max(float(_f1_at(rows, torch.tensor([v], dtype=torch.float64))) for v in every)
    assert f1 == pytest.approx(brute)
    assert float(_f1_at(rows, torch.tensor([t], dtype=torch.float64))) == pytest.approx(brute)
    assert len(_thresholds(rows)) > 100


def test_precision_at_coverage():
    # the most confident half is right; all of them, 3 of 4
    out = precision_at_coverage([0.9, 0.1, 0.8, 0.3], [1.0, 0.0, 1.0, 1.0], (0.5, 1.0))
    assert out == {"0.5": 1.0, "1": 0.75}


def test_words():
    assert words("what is the budget of [The Electric Harbor]?") == ["what", "is", "the", "budget", "of"]
    assert relation_words("__music__recording__releases") == ["music", "recording", "releases"]
    assert relation_words("worksIn") == ["works", "in"] and relation_words("directed_by~inv") == ["directed", "by"]


# ---- the answer-type restriction -------------------------------------------------------------------


@pytest.fixture(scope="module")
def film_kb():
    """Two films, directed by Ann (both) and Bob (Film B), released in 2001 and 2002: people are
    objects of directed_by only, years of release_year only."""
    names = ["Film A", "Film B", "Ann", "Bob", "2001", "2002"]
    rels = ["directed_by", "release_year"]
    t = torch.tensor([[0, 0, 2], [1, 0, 2], [1, 0, 3], [0, 1, 4], [1, 1, 5]])
    return KnowledgeBase(names, rels, t)


def test_types_drop_entities_only_an_unchosen_relation_reaches(film_kb):
    kb = film_kb
    rel = torch.zeros(1, 1, 1, kb.num_relations)
    rel[0, 0, 0, kb.relation_ids["directed_by"]] = 0.8
    rel[0, 0, 0, kb.relation_ids["release_year"]] = 0.2
    att = torch.ones(1, 1)
    x = torch.zeros(1, kb.num_entities)
    x[0, 0] = x[0, 1] = 1  # both films
    scores = kk.follow(x, rel[:, 0, 0], kb.sparse).contiguous()
    ids = {n: kb.entity_ids[n] for n in kb.entities}
    assert float(scores[0, ids["2001"]]) > 0  # the softmax's share on release_year reaches the years
    kept = Calibration(type_ratio=0.5).restrict(scores, rel, att, kb.sparse)
    assert kept[0, ids["2001"]] == -INF and kept[0, ids["2002"]] == -INF
    assert torch.equal(kept[0, [ids["Ann"], ids["Bob"]]], scores[0, [ids["Ann"], ids["Bob"]]])
    assert torch.equal(Calibration().restrict(scores, rel, att, kb.sparse), scores)  # off by default
    # a split choice keeps both types: each relation has at least half the best one's weight
    rel[0, 0, 0] = 0
    rel[0, 0, 0, kb.relation_ids["directed_by"]] = 0.55
    rel[0, 0, 0, kb.relation_ids["release_year"]] = 0.45
    assert bool(torch.isfinite(Calibration(type_ratio=0.5).restrict(scores, rel, att, kb.sparse)[0, [ids["2001"], ids["Ann"]]]).all())


def test_predict_answers_only_with_the_type_of_the_chosen_relation(trained_demo, demo):
    kb, _, test_qs = demo
    qa = trained_demo
    qs = [q for q in test_qs if q.qtype == "1hop:release_year_fwd"][:20]
    years = {int(o) for _, p, o in kb.triples.tolist() if p == kb.relation_ids["release_year"]}
    saved = qa.calibration
    try:
        qa.calibration = replace(saved, type_ratio=0.95, answer_threshold=0.0, abstain_below=0.0)
        scores, _ = qa.predict(qs)
        chosen = qa.calibration.select(scores)
        assert all(set(c) <= years for c in chosen) and all(chosen)
        raw, _ = qa.predict(qs, calibrated=False)
        other = torch.ones(kb.num_entities, dtype=torch.bool)
        other[sorted(years)] = False
        assert (raw[:, other] > 0).any()  # the hops reach entities of other types too: the restriction drops them
    finally:
        qa.calibration = saved


# ---- fit and abstention on a trained model ----------------------------------------------------------


def test_fit_on_validation_beats_the_old_rule_there(trained_demo, demo):
    kb, train_qs, _ = demo
    qa = trained_demo
    tr, va = split(train_qs, 0.1, 0)  # the fixture's split
    saved = qa.calibration
    try:
        cal = fit(qa, va, tr)
        assert cal.fitted_on == len(va) and cal.known_words and "budget" not in cal.known_words
        assert cal == saved  # what `train` stored: the same fit
        qa.calibration = Calibration()
        old = qa.evaluate(va)
        qa.calibration = cal
        new = qa.evaluate(va)
        assert new["f1"] >= old["f1"] and new["hits@1"] >= old["hits@1"]
    finally:
        qa.calibration = saved


def test_tiny_validation_keeps_the_defaults_and_says_so(trained_demo, demo):
    _, train_qs, _ = demo
    said = []
    cal = fit(trained_demo, train_qs[:5], train_qs[5:50], log=said.append)
    assert cal == Calibration()  # no word check either: so few questions cover too few words
    assert "5 validation questions (fewer than 20)" in said[0] and said[0].endswith("no word check")
    with pytest.raises(ValueError, match="target_precision"):
        fit(trained_demo, train_qs[:5], target_precision=0)


@pytest.mark.parametrize("text", ["what is the budget of [The Electric Harbor]", "when was [Pablo Jensen] born",
                                  "who produced [The Electric Harbor]"])
def test_a_question_the_kb_cannot_answer_gets_no_answer(trained_demo, demo, text):
    kb = demo[0]
    qa = trained_demo
    ok = Question("who directed [The Electric Harbor]", parse_question("who directed [The Electric Harbor]", kb), [])
    q = Question(text, parse_question(text, kb), [])
    assert qa.unknown_words(text)
    scores, _ = qa.predict([q, ok])
    chosen = qa.calibration.select(scores)
    assert chosen[0] == [] and kb.entity_ids["Pablo Jensen"] in chosen[1]
    # the model alone would answer it
    assert Calibration().select(qa.predict([q], calibrated=False)[0]) != [[]]


def test_abstaining_on_confidence_empties_the_sets_but_not_the_ranking(trained_demo, demo):
    qa = trained_demo
    qs = demo[2][:40]
    saved = qa.calibration
    try:
        qa.calibration = replace(saved, abstain_below=0.0, known_words=())
        answering = qa.evaluate(qs)
        out = qa.predict(qs)[1]
        conf = confidence(out.relations, out.hop_attention)
        qa.calibration = replace(saved, abstain_below=float(conf.median()), known_words=())
        scores, out = qa.predict(qs)
        why = qa.refusals(qs, out)
        refused = [w is not None for w in why]
        assert refused == (conf < float(conf.median())).tolist() and any(refused) and not all(refused)
        assert all("confidence" in w for w in why if w)
        assert [not ids for ids in qa.calibration.select(scores)] == refused
        abstaining = qa.evaluate(qs)
        assert abstaining["answered"] == pytest.approx(1 - sum(refused) / len(qs))
        assert abstaining["hits@1"] == answering["hits@1"] and abstaining["f1"] < answering["f1"]
    finally:
        qa.calibration = saved
