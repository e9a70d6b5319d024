"""kgqa.cli: `kgqa train / eval / ask / make-2entity` end to end, with gold and learned entities,
and the errors it reports (exit status 2, a message on standard error): every numeric argument and
output path is checked as it is read. The same probes as whole processes:
test_cli_reliability.py."""
import json
from pathlib import Path

import pytest

from kgqa import TrainConfig, cli, train

DEMO = Path(cli.DEMO_DIR)


def test_cli_train_eval_ask(tmp_path, cache, capsys):
    out = tmp_path / "model"
    rc = cli.main(["train", "--kb", str(DEMO / "kb.txt"), "--train", str(DEMO / "qa_train.txt"), "--hops", "2",
                   "--out", str(out), "--encoder", "scratch", "--epochs", "2", "--no-progress"])
    assert rc == 0 and (out / "model.safetensors").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["hops"] == 2 and config["encoder"]["kind"] == "scratch"
    assert config["train"]["relation_head"] == config["model"]["relation_head"] == "names"  # the default
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



BAD_ARGUMENTS = [
    ("train", "--epochs", "0"), ("train", "--epochs", "two"), ("train", "--hops", "0"), ("train", "--hops", "-1"),
    ("train", "--batch-size", "0"), ("train", "--lr", "0"), ("train", "--lr", "nan"), ("train", "--lr", "inf"),
    ("train", "--encoder-lr", "-1e-5"), ("train", "--patience", "0"), ("train", "--max-minutes", "0"),
    ("train", "--threads", "-2"), ("train", "--threads", str(2**40)), ("train", "--seed", str(2**64)),
    ("train", "--seed", "-1"), ("make-2entity", "--seed", "1.5"), ("train", "--valid-fraction", "1"),
    ("train", "--valid-fraction", "2"), ("train", "--valid-fraction", "-0.1"), ("train", "--valid-fraction", "nan"),
    ("train", "--out", "{file}/model"), ("train", "--out", "{file}"), ("ask", "--top", "-3"), ("ask", "--top", "0"),
    ("make-2entity", "--n", "0"), ("make-2entity", "--out", "{dir}"),
    ("make-2entity", "--out", "{dir}/no/such/folder/q.txt"), ("make-2entity", "--qtype-out", "{file}/qtype.txt"),
    ("demo", "--epochs", "0"), ("demo", "--out", "{file}/m"), ("train", "--relation-head", "words"),
]


@pytest.mark.parametrize("command,option,value", BAD_ARGUMENTS)
def test_a_bad_argument_is_one_line_and_status_2(tmp_path, capsys, command, option, value):
    (tmp_path / "a-file").write_text("")
    value = value.format(file=tmp_path / "a-file", dir=tmp_path)
    with pytest.raises(SystemExit) as exit:
        cli.main([command, option, value])  # rejected as read, before the required arguments are missed
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"kgqa {command}: error: argument {option}: ") and f"see kgqa {command} --help" in err


def test_argument_types_accept_their_range(tmp_path):
    assert cli.FRACTION("0") == 0.0 and cli.FRACTION("0.99") == 0.99 and cli.POSITIVE_INT("1") == 1
    assert cli.POSITIVE("1e-5") == 1e-5
    assert cli.writable_dir(str(tmp_path / "new" / "model")) == str(tmp_path / "new" / "model")  # made when saved
    assert cli.writable_file(str(tmp_path / "q.txt")) == str(tmp_path / "q.txt")
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_ask_refuses_more_topic_entities_than_the_model_takes(demo):
    kb, train_qs, _ = demo
    qa = train(kb, train_qs[:20], train_qs[20:30], TrainConfig(hops=1, encoder="scratch", epochs=1), progress=False,
               log=lambda s: None)
    three = "which films star [Kira Weber] and [Lena Moreau] and [Quinn Petrov]"
    assert qa.max_topics == 2 and cli.explain(qa, three) == "cannot answer: at most 2 bracketed entities"
    qa.cfg.intersection = False  # one branch seeded with all three
    assert qa.max_topics is None and cli.explain(qa, three).startswith(f"Q: {three}\n  ")


def test_train_refuses_files_without_a_usable_question(tmp_path, cache, capsys):
    """Every question dropped, or a question file not in UTF-8: refused before any training."""
    (tmp_path / "gone.txt").write_text("who directed [No Such Film]\tNobody\n")
    (tmp_path / "latin1.txt").write_bytes("who directed [Am\u00e9lie]\tJeunet\n".encode("latin-1"))
    base = ["train", "--kb", str(DEMO / "kb.txt"), "--hops", "1", "--out", str(tmp_path / "model"), "--encoder",
            "scratch", "--epochs", "1", "--no-progress"]
    capsys.readouterr()
    assert cli.main([*base, "--train", str(tmp_path / "gone.txt")]) == 2
    assert capsys.readouterr().err == (f"kgqa train: --train {tmp_path / 'gone.txt'}: no question can be used (0 of 1 "
                                       f"questions kept; dropped 1 whose topic entity is not in the KB and 0 with "
                                       f"no answer in the KB; 0 answers not in the KB)\n")
    assert cli.main([*base, "--train", str(DEMO / "qa_train.txt"), "--valid", str(tmp_path / "latin1.txt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kgqa train: {tmp_path / 'latin1.txt'}:1: not UTF-8: byte 0xe9 at character 17")
    assert len(err.splitlines()) == 1 and not (tmp_path / "model").exists()
