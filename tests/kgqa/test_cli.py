"""kgqa.cli: `kgqa train / eval / ask / make-2entity` end to end, with gold and learned entities,
and the errors it reports (exit status 2, a message on standard error)."""
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

