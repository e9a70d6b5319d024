"""kgqa.retrieval_policy: candidates drawn by the bandit from the generators, in entity resolution
(spans from the question's n-grams), the policy's state, and its place in checkpoints."""
import json
import shutil
import warnings

import pytest

from kgqa import Question, read_questions
from kgqa.bandit import BudgetBandit
from kgqa.calibration import confidence, words
from kgqa.checkpoint import CheckpointError, load, save
from kgqa.mentions import MAX_SPANS, find_mentions
from kgqa.retrieval import Retrieval
from kgqa.retrieval_context import PER_GENERATOR, PROBE_K, SPAN_FEATURES, context_dim, context_features
from kgqa.retrieval_policy import CandidatePolicy, fit, gold_mentions, name_kind


def typo(name: str) -> str:
    """One letter of the longest word dropped (edit distance 1)."""
    words = name.split()
    i = max(range(len(words)), key=lambda j: len(words[j]))
    w = words[i]
    words[i] = w[: len(w) // 2] + w[len(w) // 2 + 1 :]
    return " ".join(words)


def build(kb):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no encoder: no dense generator (RetrievalWarning)
        return Retrieval.build(kb.entities, aliases=kb.aliases)


@pytest.fixture(scope="module")
def policy(demo):
    """A policy over the demo KB's names (no dense generator) that has played every two-word-or-
    longer name once as written and once with a typo: the first 80% of them."""
    kb, _, _ = demo
    p = CandidatePolicy(build(kb), kb.entities, seed=0)
    names = [(n, e) for e, n in enumerate(kb.entities) if len(n.split()) >= 2]
    cut = int(0.8 * len(names))
    spans = [(m, e) for n, e in names[:cut] for m in (n, typo(n))]
    p.learn([m for m, _ in spans], [{e} for _, e in spans])
    return p, kb, names[cut:]


def test_a_misspelt_name_beside_an_exact_match_is_found(policy):
    p, kb, held_out = policy
    found = 0
    for name, e in held_out[:20]:
        plain = f"who acted in {typo(name)} in 1995"  # "1995" matches a name exactly
        old = {x for m in find_mentions(plain, kb.aliases) for x in m.entities}
        assert e not in old  # today's resolver never looks further (the "fuzzy never runs")
        (ms,) = p.find_mentions([plain])
        assert 0 < len(ms) <= MAX_SPANS
        assert all(len(m.entities) <= p.bandit.budget and len(set(m.entities)) == len(m.entities) for m in ms)
        assert [m.end - m.start for m in ms] == sorted((m.end - m.start for m in ms), reverse=True)
        span = next((m for m in ms if m.text == typo(name)), None)
        found += span is not None and e in span.entities
        exact = next(m for m in ms if m.text == "1995")
        assert exact.how[0] == "exact" and kb.entities[exact.entities[0]] == "1995"
    assert found >= 18


def test_many_questions_at_once_find_what_each_alone_finds(policy, demo):
    """find_mentions probes and draws each distinct span text once across the questions: the same
    mentions and candidates as one question at a time, whose spans are all probed."""
    p, kb, held_out = policy
    _, train_qs, _ = demo
    plains = [q.text.replace("[", "").replace("]", "") for q in train_qs[:6]]
    plains += [f"who acted in {typo(n)}" for n, _ in held_out[:4]] + [f"what did {n} write" for n, _ in held_out[:4]]
    plains += plains[:3]  # the same question twice in one batch
    together = p.find_mentions(plains)
    alone = [p.find_mentions([t])[0] for t in plains]
    assert together == alone
    assert sum(map(len, together)) > len(plains)  # the questions did find candidates
    spans = [m.text for ms in together for m in ms]
    assert len(set(spans)) < len(spans)  # n-grams shared across questions were drawn once


def test_remember_leaves_out_a_mention_with_no_letter_or_digit(demo):
    kb, _, _ = demo
    p = CandidatePolicy(build(kb), kb.entities)
    assert p.remember([("$", 0), ("...", 1), (kb.entities[2], 2)]) == 1  # "$" is a MetaQA film
    assert len(p.memory) == 1 and [h.entity for h in p.memory.search([kb.entities[2]], 1)[0]] == [2]


def test_state_round_trips_with_the_memory(policy, demo):
    p, kb, held_out = policy
    fresh = CandidatePolicy(build(kb), kb.entities, BudgetBandit.from_state_dict(p.bandit.state_dict()))
    assert fresh.remember([("the harbour one", 0)]) == 1
    state = json.loads(json.dumps(fresh.state_dict()))
    back = CandidatePolicy.from_state_dict(state, kb.entities, aliases=kb.aliases)
    assert back.generators == p.generators
    assert back.memory.search(["the harbour one"], 1)[0][0].entity == 0
    questions = [f"who acted in {typo(n)}" for n, _ in held_out[:5]]
    assert [[m.entities for m in ms] for ms in back.find_mentions(questions)] == \
           [[m.entities for m in ms] for ms in fresh.find_mentions(questions)]
    for key, value, match in (("version", 7, "version"), ("context_version", 0, "context_version"),
                              ("bandit", {**state["bandit"], "dim": 3}, "bandit: A_inv: shape")):
        with pytest.raises(ValueError, match=match):
            CandidatePolicy.from_state_dict({**state, key: value}, kb.entities, aliases=kb.aliases)
    with pytest.raises(ValueError, match="memory: missing"):
        CandidatePolicy.check_state({k: v for k, v in state.items() if k != "memory"})
    # Which similarity describes a candidate: kept; a state from before the key keeps the old one.
    assert state["any_order"] is True and back.any_order
    older = CandidatePolicy.from_state_dict({k: v for k, v in state.items() if k != "any_order"}, kb.entities,
                                            aliases=kb.aliases)
    assert not older.any_order
    name, entity = held_out[0]
    reordered = " ".join(reversed(name.split()))  # the whole question: one span, the name's words reversed

    def described(p_):
        (m,) = [m for m in p_.find_mentions([reordered])[0] if m.text == reordered]
        return m.similarity[m.entities.index(entity)]

    assert described(back) == 1.0 > described(older)
    with pytest.raises(ValueError, match="any_order: expected true or false"):
        CandidatePolicy.from_state_dict({**state, "any_order": "yes"}, kb.entities, aliases=kb.aliases)


@pytest.mark.parametrize("text, name, kind", [
    ("LOTR", "The Lord of the Rings", "initials"), ("l.o.t.r.", "The Lord of the Rings", "initials"),
    ("TLOTR", "The Lord of the Rings", "initials"), ("Hanks", "Tom Hanks", "words"),
    ("hanks tom", "Tom Hanks", "words"), ("Hanx", "Tom Hanks", "fuzzy"), ("tom hanks jr", "Tom Hanks", "fuzzy"),
    ("LOTS", "The Lord of the Rings", "fuzzy"), ("TH", "Tom Hanks", "initials"),
])
def test_name_kind(text, name, kind):
    from kgqa.aliases import normalise

    assert name_kind(text, normalise(text), normalise(name)) == kind


def test_initials_and_words_are_named_to_the_resolver(policy):
    """A span that is a name's initials, or a word of it, is described as such (NAME_KINDS); a
    policy state from before them describes both as "fuzzy"."""
    p, kb, _ = policy
    name = next(n for n in kb.entities if len(n.split()) >= 3)
    entity = kb.entity_ids[name]
    initials = "".join(w[0] for w in name.split()).upper()
    word = max(name.split(), key=len)
    older = CandidatePolicy.from_state_dict({k: v for k, v in p.state_dict().items() if k != "name_kinds"},
                                            kb.entities, aliases=kb.aliases)
    assert p.name_kinds and not older.name_kinds
    for span, kind in ((initials, "initials"), (word, "words")):
        for p_, expect in ((p, kind), (older, "fuzzy")):
            (m,) = [m for m in p_.find_mentions([f"who directed {span}"])[0] if m.text == span]
            assert entity in m.entities, (span, m.entities)
            assert m.how[m.entities.index(entity)] == expect
    with pytest.raises(ValueError, match="name_kinds: expected true or false"):
        CandidatePolicy.check_state({**p.state_dict(), "name_kinds": 1})


def test_context_features_describe_the_span_and_the_probe(policy):
    p, kb, _ = policy
    name = next(n for n in kb.entities if len(n.split()) == 3)
    rows = {}
    for mention in (name, name.lower(), typo(name)):
        (probe,) = p.retrieval.search([mention], {g: PROBE_K for g in p.generators})
        x = context_features(mention, probe, kb.entities, p.generators)
        assert x.shape == (context_dim(p.generators),) and ((x >= -1) & (x <= 1)).all()
        rows[mention] = dict(zip(SPAN_FEATURES, x))
        fuzzy_at = len(SPAN_FEATURES) + len(PER_GENERATOR) * p.generators.index("fuzzy")
        rows[mention]["fuzzy similarity"] = x[fuzzy_at + PER_GENERATOR.index("similarity")]
    exact, lower, misspelt = rows[name], rows[name.lower()], rows[typo(name)]
    assert exact["exact"] > 0 and exact["normalised"] == 0 and exact["lower"] == 0 and exact["capitalised"] == 1
    assert lower["exact"] == 0 and lower["normalised"] > 0 and lower["lower"] == 1
    assert misspelt["exact"] == misspelt["normalised"] == 0 and 0.8 < misspelt["fuzzy similarity"] < 1
    assert exact["words"] == pytest.approx(3 / 8)
    with pytest.raises(ValueError, match="mention"):
        context_features(None, {}, kb.entities, p.generators)


def test_gold_mentions_are_the_bracketed_names(demo):
    kb, train_qs, _ = demo
    spans = gold_mentions(train_qs[:50])
    assert spans and all(kb.entities[next(iter(g))] == m for m, g in spans)


@pytest.fixture(scope="module")
def policy_model(tmp_path_factory, learned_model):
    """The session's learned-entity model (``learned_model``) switched to --retrieval policy: its
    policy fitted on 60 of its training questions (what ``kgqa.trainer.train`` does before the
    first epoch), saved. Training a second model only for this would cost minutes on the CPU."""
    folder, kb, _ = learned_model
    qa = load(folder / "model", kb)
    qs = read_questions(folder / "train.txt", kb, require_topics=False)[0][:60]
    logs = []
    fit(qa, qs, logs.append)
    d = tmp_path_factory.mktemp("policy") / "model"
    save(qa, d, None)
    return qa, d, logs, len(gold_mentions(qs))


def test_a_policy_model_saves_and_loads_its_policy(policy_model, demo):
    qa, d, logs, n = policy_model
    kb = demo[0]
    assert n >= 60  # a 2-entity question has two
    assert any(f"candidate policy: played {n} gold mentions" in line for line in logs)
    assert qa.cfg.retrieval == "policy" and qa.links.policy.bandit.updates == n
    assert "dense" in qa.links.policy.generators  # the QA's encoder embeds the names
    config = json.loads((d / "config.json").read_text())
    assert config["train"]["retrieval"] == "policy" and config["retrieval"]["bandit"]["updates"] == n
    qa.links.policy.remember([("the harbour one", 0)])  # after the save: the loaded memory must not have it
    back = load(d, kb)
    assert back.links.policy is not None and back.links.policy.generators == qa.links.policy.generators
    assert len(back.links.policy.memory) == len(qa.links.policy.memory) - 1
    x = [0.5] * qa.links.policy.bandit.dim
    assert back.links.policy.bandit.allocate(x) == qa.links.policy.bandit.allocate(x)
    name = next(n for n in kb.entities if len(n.split()) >= 2)
    r = back.ask(f"who acted in {typo(name)}")
    assert r.links and len(back.links.inputs_by_text) == 1  # linked through the policy's mentions


def test_the_word_check_skips_the_words_of_the_linked_mention(policy_model, demo):
    """A name typed with a typo is a word no training question had; once the resolver has linked
    it, it is the entity's name, not a word the model never saw. A word outside it still is, and
    predict's refusals are the word check on what it linked. (Which spans this small model links
    in the second question is a coin toss: its P(two entities) there was 0.499 for one training and
    0.503 for another, which also linked a span with "budget" in it.)"""
    qa = policy_model[0]
    kb = demo[0]
    assert qa.calibration.known_words  # the model has a word check
    name = next(n for n in kb.entities if len(n.split()) >= 2 and max(map(len, n.split())) >= 6)
    written = typo(name)
    (bad,) = set(written.lower().split()) - set(name.lower().split())
    asks = [Question(f"who acted in {written}", [], []), Question(f"what is the budget of {written}", [], [])]
    _, out = qa.predict(asks)
    linked = qa.linked_words(out)
    assert bad in linked[0] and bad in qa.unknown_words(asks[0].text)  # the check alone would refuse it
    assert qa.unknown_words(asks[0].text, linked=linked[0]) == []
    assert out.refusals[0] is None or "never saw" not in out.refusals[0]
    assert qa.unknown_words(asks[1].text, linked=frozenset(words(written))) == ["budget"]
    conf = confidence(out.relations, out.hop_attention).tolist()
    assert out.refusals == [qa.calibration.refusal(c, qa.unknown_words(q.text, linked=w))
                            for q, c, w in zip(asks, conf, linked)]


def test_a_checkpoint_from_before_the_name_kinds_loads_and_reads_its_features(policy_model, tmp_path, demo):
    """A learned-entity model saved before NAME_KINDS: no "entity_features" in its model config, a
    match scorer of 5 inputs, a policy state without "name_kinds". It loads, reads the first 5
    features and names no initials; a shape that matches neither is refused naming the key."""
    from safetensors.torch import load_file, save_file

    from kgqa.features import ENTITY_FEATURES, ENTITY_FEATURES_BEFORE_NAME_KINDS as OLD

    qa, d, _, _ = policy_model
    kb = demo[0]
    old = tmp_path / "old"
    shutil.copytree(d, old)
    config = json.loads((old / "config.json").read_text())
    assert config["model"]["entity_features"] == ENTITY_FEATURES and config["retrieval"]["name_kinds"] is True
    del config["model"]["entity_features"], config["retrieval"]["name_kinds"]
    (old / "config.json").write_text(json.dumps(config))
    tensors = load_file(old / "model.safetensors")
    key = "model.resolver.match_scorer.weight"
    tensors[key] = tensors[key][:, :OLD].contiguous()
    save_file(tensors, old / "model.safetensors")
    back = load(old, kb)
    assert back.model.resolver.entity_features == OLD and not back.links.policy.name_kinds
    name = next(n for n in kb.entities if len(n.split()) >= 2)
    assert back.ask(f"who acted in {typo(name)}").links
    config["model"]["entity_features"] = 6
    (old / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model.entity_features"):
        load(old, kb)


def test_older_checkpoints_load_and_a_missing_policy_is_named(policy_model, tmp_path, demo):
    qa, d, _, _ = policy_model
    kb = demo[0]
    old = tmp_path / "old"
    shutil.copytree(d, old)
    config = json.loads((old / "config.json").read_text())
    for key in ("retrieval", "budget"):
        del config["train"][key]  # as written before these fields existed
    del config["retrieval"]
    (old / "config.json").write_text(json.dumps(config))
    back = load(old, kb)
    assert back.cfg.retrieval == "alias" and back.links.policy is None
    config["train"]["retrieval"] = "policy"
    (old / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="retrieval: missing"):
        load(old, kb)
    config["train"]["retrieval"] = "alias"
    config["retrieval"] = {"version": 1}
    (old / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="retrieval: present"):
        load(old, kb)
    config["train"]["retrieval"] = "policy"
    (old / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="retrieval.context_version: missing"):
        load(old, kb)


@pytest.mark.parametrize("value", ["0", "1001", "x"])
def test_cli_budget_out_of_range_is_named(value, capsys):
    from kgqa import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--kb", "kb.txt", "--train", "t.txt", "--out", "m", "--retrieval", "policy",
                  "--budget", value])
    assert e.value.code == 2 and "--budget" in capsys.readouterr().err
