"""kgqa.answers and kgqa.evidence: ``QA.ask`` / ``QA.ask_many``, the KB paths that carry each
answer's score, and `kgqa ask` (text, --json, standard input, exit status). The trained models are
the session's (tests/kgqa/conftest.py): ``trained_demo`` (gold entities, 2 hops) and
``learned_model`` (learned entities, 1 hop)."""
import io
import json
import os
import re
import signal
from pathlib import Path

import pytest
import torch

from kgqa import QA, Answer, EvidencePath, Question, Response, RigelModel, TrainConfig, cli
from kgqa.calibration import Calibration
from kgqa.encoder import ScratchEncoder
from kgqa.evidence import HostTrace, answer_paths
from kgqa.linking import strip_brackets

ROOT = Path(__file__).resolve().parents[2]
DEMO = Path(cli.DEMO_DIR)
EVERYTHING = 10**6  # a beam and a path count no demo answer reaches: every path is kept


def one_per_kind(questions, kinds=None):
    """The first question of each question type (of those starting with ``kinds``)."""
    seen = {}
    for q in questions:
        if kinds is None or q.qtype.startswith(kinds):
            seen.setdefault(q.qtype, q)
    return list(seen.values())


def kb_facts(kb):
    """Every fact of the KB as (subject, relation, object) names."""
    return {(kb.entities[s], kb.base_relations[p], kb.entities[o]) for s, p, o in kb.triples.tolist()}


def check_chained(path: EvidencePath, answer: str, facts, hops: int):
    """A path is KB facts, each starting where the last ended, from its topic to the answer."""
    assert 1 <= len(path.steps) <= hops
    assert path.steps[0].source == path.topic and path.steps[-1].target == answer
    for a, b in zip(path.steps, path.steps[1:]):
        assert a.target == b.source
    for step in path.steps:
        assert step.fact in facts, step
        assert 0 < step.weight <= 1
    assert path.share > 0


def all_paths(qa, questions):
    """Per question, per answer the model stands behind: (id, score, every path that carries it)."""
    scores, out = qa.predict(questions, trace=True)
    rows = []
    for b, ids in enumerate(qa.calibration.select(scores)):
        trace = HostTrace(out.trace[b])
        rows.append([(e, float(scores[b, e]), answer_paths(trace, qa.fact_index, e, EVERYTHING, EVERYTHING))
                     for e in ids])
    return rows


# ---- evidence --------------------------------------------------------------------------------

def test_evidence_paths_are_kb_facts_from_the_topic_to_the_answer(trained_demo, demo):
    kb, _, test = demo
    facts = kb_facts(kb)
    questions = one_per_kind(test)
    responses = trained_demo.ask_many([q.text for q in questions], top=3)
    assert len(responses) == len(questions) and not any(r.error for r in responses)
    answered = 0
    for q, r in zip(questions, responses):
        assert r.topics == [kb.entities[e] for e in q.topics]
        for a in r.answers:
            answered += 1
            assert a.evidence, (r.question, a.entity)
            assert {p.topic for p in a.evidence} == set(r.topics)  # a path from each topic entity
            for p in a.evidence:
                check_chained(p, a.entity, facts, trained_demo.cfg.hops)
            shares = [p.share for p in a.evidence]
            assert shares == sorted(shares, reverse=True)
    assert answered >= len(questions)


def test_path_shares_sum_to_the_answer_score(trained_demo, demo):
    """Every path kept, the paths from each topic entity sum to the answer's score: the split is
    exact, for 1- and 2-hop questions and for each entity of a 2-entity question."""
    kb, _, test = demo
    questions = one_per_kind(test)
    checked = set()
    for q, answers in zip(questions, all_paths(trained_demo, questions)):
        for e, score, paths in answers:
            for branch in range(len(q.topics)):
                total = sum(p[1] for p in paths if p[0] == branch)
                assert total == pytest.approx(score, rel=1e-4, abs=1e-6), (q.text, kb.entities[e], branch)
            assert {p[0] for p in paths} == set(range(len(q.topics)))
            checked.add(q.qtype.split(":")[0])
    assert checked == {"1hop", "2hop", "2entity"}


@pytest.mark.parametrize("intersection", [True, False])
def test_three_hops_split_exactly(demo, intersection):
    """The split needs no training: an untrained 3-hop model spreads its scores over many paths of
    1 to 3 hops, and they still sum to each score, per branch with intersection, over one branch
    seeded with both entities without."""
    kb, train_qs, test = demo
    torch.manual_seed(0)
    encoder = ScratchEncoder.build([q.masked for q in train_qs[:200]], dim=16)
    model = RigelModel(encoder.out_dim, kb.num_relations, 3, 2, 16, "gold")
    qa = QA(kb, encoder, model, TrainConfig(hops=3, encoder="scratch", intersection=intersection, relation_head="ids"))
    questions = one_per_kind(test, ("1hop", "2entity"))[:4]
    assert {len(q.topics) for q in questions} == {1, 2}
    scores, out = qa.predict(questions, trace=True)
    lengths = set()
    for b, q in enumerate(questions):
        trace = HostTrace(out.trace[b])
        for e in {int(outputs[0].argmax()) for outputs in trace.outputs}:  # each hop's most reached entity
            paths = answer_paths(trace, qa.fact_index, e, EVERYTHING, EVERYTHING)
            lengths |= {len(p[3]) for p in paths}
            for branch in range(len(q.topics) if intersection else 1):
                total = sum(p[1] for p in paths if p[0] == branch)
                assert total == pytest.approx(float(scores[b, e]), rel=1e-4), (q.text, branch)
            assert {p[2][0] for p in paths} <= set(q.topics)  # every path starts at a topic entity
    assert lengths == {1, 2, 3}


def test_the_default_paths_are_the_largest(trained_demo, demo):
    """ask() keeps a few paths per topic entity: the largest of all, and their shares."""
    _, _, test = demo
    questions = one_per_kind(test, ("2hop",))
    full = all_paths(trained_demo, questions)
    for q, answers in zip(questions, full):
        r = trained_demo.ask(q.text, top=3, paths=2)
        for a, (e, score, paths) in zip(r.answers, answers):
            assert a.score == pytest.approx(score)
            assert [p.share for p in a.evidence] == pytest.approx([p[1] for p in paths[:2]], rel=1e-6)
            assert sum(p.share for p in a.evidence) <= score * (1 + 1e-6)


def test_learned_entities_evidence_starts_at_the_linked_entity(learned_model):
    d, kb, test = learned_model
    qa = QA.load(d / "model", kb)
    facts = kb_facts(kb)
    questions = [q for q in test if len(q.topics) == 1][:3] + [q for q in test if len(q.topics) == 2][:3]
    responses = qa.ask_many([strip_brackets(q.text)[0] for q in questions], top=2)
    for q, r in zip(questions, responses):
        assert r.error is None and r.links and r.two_entities is not None
        assert r.topics == [link.entity for link in r.links]
        for a in r.answers:
            # The first linked entity's paths carry the whole score, so some are listed; the largest
            # share may be the second branch's seed's (soft, weighted by P(two entities))
            assert a.evidence and r.topics[0] in {p.topic for p in a.evidence}
            for p in a.evidence:
                check_chained(p, a.entity, facts, qa.cfg.hops)
    # Exact here too: the first entity's paths carry the whole score (the one-entity reading and
    # the pair's first branch); the second's only the pair's part, P(two entities) x the pair's
    # score, which is no share of the whole score (the pair can score above the one-entity reading)
    # but never more than all of it.
    plain = [Question(strip_brackets(q.text)[0], [], []) for q in questions]
    for r, answers in zip(responses, all_paths(qa, plain)):
        for e, score, paths in answers:
            assert sum(p[1] for p in paths if p[0] == 0) == pytest.approx(score, rel=1e-4, abs=1e-6)
            assert sum(p[1] for p in paths if p[0] == 1) <= score + 1e-5


def test_predict_keeps_a_trace_only_when_asked(trained_demo, demo):
    _, _, test = demo
    batch = [q for q in test if len(q.topics) == 1][:4]
    scores, out = trained_demo.predict(batch)
    assert out.trace is None
    traced_scores, traced = trained_demo.predict(batch, trace=True)
    assert len(traced.trace) == len(batch) and traced_scores.equal(scores)


# ---- the Python API --------------------------------------------------------------------------

def test_ask_many_is_ask_per_question(trained_demo, demo):
    """One batch mixing one- and two-entity questions gives what each asked alone gives."""
    _, _, test = demo
    texts = [q.text for q in one_per_kind(test)][:8]
    assert {t.count("[") for t in texts} == {1, 2}
    many = trained_demo.ask_many(texts, top=3)
    for text, r in zip(texts, many):
        alone = trained_demo.ask(text, top=3)
        assert r.question == alone.question == text
        assert [a.entity for a in r.answers] == [a.entity for a in alone.answers]
        assert [a.score for a in r.answers] == pytest.approx([a.score for a in alone.answers], abs=1e-5)
        assert [sorted(p.topic for p in a.evidence) for a in r.answers] == [sorted(p.topic for p in a.evidence)
                                                                              for a in alone.answers]


def test_answers_are_what_calibration_selects(trained_demo, demo):
    _, _, test = demo
    q = next(q for q in test if q.qtype.startswith("1hop:starred_actors_inv"))
    scores, _ = trained_demo.predict([q])
    chosen = trained_demo.calibration.select(scores)[0]
    r = trained_demo.ask(q.text, top=50)
    assert [a.entity for a in r.answers] == [trained_demo.kb.entities[e] for e in chosen] and not r.abstained
    assert len(trained_demo.ask(q.text, top=1).answers) == 1  # top caps the set


def test_abstention_is_no_answer_and_no_error(trained_demo, demo, monkeypatch):
    _, _, test = demo
    monkeypatch.setattr(trained_demo, "calibration", Calibration(abstain_below=1.5))  # no score reaches it
    r = trained_demo.ask(test[0].text)
    assert r.abstained and r.answers == [] and r.error is None and r.topics
    assert r.abstain_reason.startswith("confidence ") and r.abstain_reason.endswith("under 1.500")


def test_calling_the_model_asks(trained_demo):
    """qa("...") is what a user tries first: it is qa.ask("...")."""
    text = "who directed [The Golden Storm]"
    assert trained_demo(text, top=2).to_dict() == trained_demo.ask(text, top=2).to_dict()
    with pytest.raises(TypeError, match="ask_many"):
        trained_demo([text])


BAD = [("", "empty question"), ("   ", "empty question"),
       ("who directed [No Such Film]", "topic entity 'No Such Film' is not in the KB"),
       ("who directed the golden storm", "no topic entity: put it in [brackets]"),
       ("which films star [Kira Weber] and [Lena Moreau] and [Quinn Petrov]",
        "3 bracketed entities, but this model takes at most 2")]


def test_a_question_that_cannot_be_read(trained_demo):
    texts = [BAD[0][0], "who directed [The Golden Storm]"] + [t for t, _ in BAD[1:]]
    responses = trained_demo.ask_many(texts)
    good = responses.pop(1)
    assert good.error is None and good.answers  # the batch goes on around the bad ones
    for (text, why), r in zip(BAD, responses):
        assert r.question == text and r.error.startswith(why) and r.answers == [] and not r.abstained
        with pytest.raises(ValueError) as e:
            trained_demo.ask(text)
        assert str(e.value) == r.error  # the same message either way


def test_bad_arguments_are_named(trained_demo):
    with pytest.raises(TypeError, match="not one string"):
        trained_demo.ask_many("who directed [The Golden Storm]")
    with pytest.raises(TypeError, match=r"questions\[1\] must be a string"):
        trained_demo.ask_many(["who directed [The Golden Storm]", None])
    with pytest.raises(ValueError, match="top must be an integer >= 1, got 0"):
        trained_demo.ask("who directed [The Golden Storm]", top=0)
    with pytest.raises(ValueError, match="paths must be an integer >= 0"):
        trained_demo.ask("who directed [The Golden Storm]", paths=-1)
    with pytest.raises(TypeError, match="use ask"):
        trained_demo.predict(["who directed [The Golden Storm]"])
    assert trained_demo.ask("who directed [The Golden Storm]", paths=0).answers[0].evidence == []


def test_json_shape(trained_demo):
    r = trained_demo.ask("which films written by [Nils Eriksen] star [Farid Fischer]")
    d = json.loads(json.dumps(r.to_dict()))
    assert {"question", "answers", "abstained", "error", "topics", "hop_attention"} <= set(d)
    assert d["topics"] == ["Nils Eriksen", "Farid Fischer"] and d["error"] is None
    a = d["answers"][0]
    assert set(a) == {"entity", "score", "evidence"} and isinstance(a["score"], float)
    path = a["evidence"][0]
    assert set(path) == {"topic", "share", "steps"}
    assert set(path["steps"][0]) == {"from", "relation", "to", "weight"}
    assert isinstance(r, Response) and isinstance(r.answers[0], Answer)


# ---- kgqa ask ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_checkpoint(trained_demo, tmp_path_factory):
    d = tmp_path_factory.mktemp("ask") / "model"
    trained_demo.save(d, str(DEMO / "kb.txt"))
    return d


def test_printed_explanation_is_the_answers_evidence(trained_demo, demo_checkpoint, capsys):
    """Under each answer, `kgqa ask` prints the paths it came from, with their relations."""
    text = "the films starring [Tara Ivanova] were directed by who"
    r = trained_demo.ask(text, top=2)
    assert cli.main(["ask", "--model", str(demo_checkpoint), "--top", "2", text]) == 0
    printed = capsys.readouterr().out
    assert printed.strip() == cli.format_response(r)
    for a in r.answers:
        block = printed.split(f"  {a.score:.3f}  {a.entity}\n", 1)[1]
        for p in a.evidence:
            relations = [s.fact[1] for s in p.steps]
            line = block.splitlines()[a.evidence.index(p)]
            assert re.findall(r"[-<]-?(\w+) \(", line) == relations and line.strip().startswith(f"{p.share:.3f}")


def test_ask_json_one_object_a_line(demo_checkpoint, capsys):
    texts = ["who directed [The Golden Storm]", "which films written by [Nils Eriksen] star [Farid Fischer]"]
    assert cli.main(["ask", "--model", str(demo_checkpoint), "--json", *texts]) == 0  # every one answered
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["question"] for line in lines] == texts


def test_ask_reads_standard_input(demo_checkpoint, capsys, monkeypatch):
    """One JSON object a line, in order, an error for each question that cannot be read, exit 1."""
    texts = ["who directed [The Golden Storm]", "", "who directed [No Such Film]", "what genre is [The Golden Storm]"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(texts) + "\n"))
    assert cli.main(["ask", "--model", str(demo_checkpoint), "--kb", str(DEMO / "kb.txt")]) == 1
    out = capsys.readouterr()
    rows = [json.loads(line) for line in out.out.splitlines()]  # nothing else on standard output
    assert [r["question"] for r in rows] == texts
    assert [r["error"] is None for r in rows] == [True, False, False, True]
    assert rows[0]["answers"] and rows[0]["answers"][0]["evidence"]
    assert "2 of 4 questions could not be answered" in out.err and "KB " in out.err
    monkeypatch.setattr("sys.stdin", io.StringIO(texts[0] + "\n" + texts[3] + "\n"))
    assert cli.main(["ask", "--model", str(demo_checkpoint)]) == 0


def test_ask_exit_status(demo_checkpoint, capsys, monkeypatch):
    model = ["ask", "--model", str(demo_checkpoint)]
    assert cli.main([*model, "who directed [The Golden Storm]", "who directed [No Such Film]"]) == 1
    load = cli.checkpoint.load

    def unsure(*args, **kwargs):  # a model that stands behind no answer: abstaining is answering
        qa = load(*args, **kwargs)
        qa.calibration = Calibration(abstain_below=1.5)
        return qa

    monkeypatch.setattr(cli.checkpoint, "load", unsure)
    capsys.readouterr()
    assert cli.main([*model, "--json", "who directed [The Golden Storm]"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["abstained"] is True and printed["abstain_reason"].startswith("confidence ")


def test_no_word_check_answers_what_the_word_check_refuses(demo_checkpoint, capsys):
    model = ["ask", "--model", str(demo_checkpoint), "--json", "what is the budget of [The Golden Storm]"]
    assert cli.main(model) == 0
    refused = json.loads(capsys.readouterr().out)
    assert refused["abstained"] and refused["abstain_reason"] == "words the model never saw in training: budget"
    assert cli.main([*model, "--no-word-check"]) == 0
    answered = json.loads(capsys.readouterr().out)
    assert not answered["abstained"] and answered["answers"]


def test_standard_input_is_answered_as_it_comes():
    """A program that writes a question and waits for its answer gets it: a batch ends when no
    further line is waiting; lines that wait together go together."""
    r, w = os.pipe()
    with os.fdopen(r, "r") as stream, os.fdopen(w, "w") as writer:
        batches = cli._line_batches(stream, 64)
        writer.write("q1\n")
        writer.flush()
        old = signal.signal(signal.SIGALRM, lambda *a: pytest.fail("waited for a line that never came"))
        signal.alarm(10)
        try:
            assert next(batches) == ["q1"]
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
        writer.write("q2\nq3\n\nq4")
        writer.close()
        assert list(batches) == [["q2", "q3", "", "q4"]]


# ---- the README's example --------------------------------------------------------------------

def test_the_readme_example_runs(demo_checkpoint, capsys):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Answering questions over your own KB", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    assert '"runs/demo"' in code
    exec(compile(code.replace('"runs/demo"', repr(str(demo_checkpoint))), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "topic entity 'No Such Film' is not in the KB" in printed and '"answers": [' in printed
