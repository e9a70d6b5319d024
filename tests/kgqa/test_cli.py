"""kgqa.cli: `kgqa train / eval / ask / make-2entity` end to end, with gold and learned entities,
and the errors it reports (exit status 2, a message on standard error): every numeric argument and
output path is checked as it is read. The same probes as whole processes:
test_cli_reliability.py."""
import argparse
import json
from pathlib import Path

import pytest

from kgqa import TrainConfig, cli, distribution, train
from kgqa.questions import write_questions

DEMO = Path(cli.DEMO_DIR)


def test_cli_train_eval_ask(tmp_path, cache, capsys):
    out = tmp_path / "model"
    capsys.readouterr()
    # 600 of the demo's 2,827 training questions: the commands' behaviour, not the model's accuracy
    train_file = tmp_path / "train.txt"
    train_file.write_text("".join((DEMO / "qa_train.txt").read_text().splitlines(keepends=True)[:600]))
    rc = cli.main(["train", "--kb", str(DEMO / "kb.txt"), "--train", str(train_file), "--hops", "2",
                   "--out", str(out), "--encoder", "scratch", "--epochs", "2", "--no-progress", "--json"])
    assert rc == 0 and (out / "model.safetensors").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["hops"] == 2 and config["encoder"]["kind"] == "scratch"
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[0].startswith("KB ") and any(line.startswith("epoch 1: loss") for line in printed)
    summary = json.loads(printed[-1])  # train --json: the last line
    assert summary["valid"] == config["valid"] and summary["train_minutes"] == config["train_minutes"]
    assert summary["out"] == str(out.resolve()) and summary["epochs"] == len(config["train"]["history"]) >= 1
    assert "best_epoch" in summary
    fitted_on = config["calibration"]["fitted_on"]  # train's validation questions
    assert fitted_on >= 20
    assert config["train"]["relation_head"] == config["model"]["relation_head"] == "names"  # the default
    # the defaults: topic types; a paths-only model does not restrict its hops ("auto")
    assert config["model"]["topic_types"] and config["train"]["restrict_hops"] == "auto"
    assert config["model"]["restrict_hops"] is False
    assert cli.main(["eval", "--model", str(out), "--questions", str(DEMO / "qa_test.txt"), "--json"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    last = json.loads(printed[-1])
    assert 0 <= last["hits@1"] <= 1 and last["n"] == 808
    # answer-set F1 by the stored calibration, abstentions, and Hits@1 against coverage
    assert last["calibration"]["fitted_on"] == fitted_on and set(last["precision_at_coverage"]) == {"0.5", "0.8", "0.9", "1"}
    assert last["precision_at_coverage"]["1"] == pytest.approx(last["hits@1"]) and 0 <= last["answered"] <= 1
    assert any(line.startswith("answered ") for line in printed)
    assert any(line.startswith(f"answer sets: fitted on {fitted_on} validation questions") for line in printed)
    # --quiet: the results alone, no line about what was read
    assert cli.main(["eval", "--model", str(out), "--questions", str(DEMO / "qa_test.txt"), "--json", "--quiet"]) == 0
    quiet = capsys.readouterr()
    assert quiet.out.splitlines()[0].startswith("Hits@1 ") and json.loads(quiet.out.splitlines()[-1]) == last
    assert quiet.out.splitlines()[1:-1] == printed[-4:-1] and quiet.err == ""  # the answer-set lines stay
    assert cli.main(["ask", "--model", str(out), "who directed [The Golden Storm]"]) == 0
    text = capsys.readouterr().out
    assert "hop attention: 1 hop " in text and ", 2 hops " in text
    assert cli.main(["ask", "--model", str(out), "who directed [No Such Film]"]) == 1  # not answered at all
    assert "cannot answer: topic entity 'No Such Film' is not in the KB" in capsys.readouterr().out
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
    captured = capsys.readouterr()
    text = captured.out
    assert "'The Golden Storm' -> The Golden Storm" in text and "hop attention: 1 hop" in text
    assert "[The Golden Storm] -directed_by (" in text  # the evidence of the answer
    assert "Loading weights" not in captured.err  # transformers' bar, silenced while a local encoder loads
    assert cli.main(["ask", "--model", str(d / "model"), "zzz qqq"]) == 1
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
    cli._import_model_layer()  # explain is called here directly, not through main(), which imports for it
    assert qa.max_topics == 2
    assert cli.explain(qa, three) == (f"Q: {three}\n  cannot answer: 3 bracketed entities, but this model takes "
                                      f"at most 2")
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


# ---- conventions: help and defaults, --version, --out and --force, exit statuses ----------------


def test_every_option_has_help_and_shows_its_default(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps nothing: one line per option
    ap = cli.build_parser()
    commands = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"train", "eval", "ask", "make-2entity", "demo"} <= set(commands)
    for command, parser in [("", ap), *commands.items()]:
        lines = parser.format_help().splitlines()
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"kgqa {command} {action.dest}: no help"
            if not action.option_strings:
                continue
            i = next(i for i, x in enumerate(lines) if x.split() and x.split()[0].rstrip(",") in action.option_strings)
            line = lines[i]
            if i + 1 < len(lines) and lines[i + 1].strip() and not lines[i + 1].strip().startswith("-"):
                line += lines[i + 1]  # a long invocation has its help on the next line
            if action.default is None or action.default is False:
                assert "(default: None)" not in line and "(default: False)" not in line, line
            elif action.default != argparse.SUPPRESS:
                assert line.endswith(f"(default: {action.default})"), line
    assert "--quiet" in commands["train"].format_help() and "--quiet" in commands["ask"].format_help()


def test_train_defaults_are_train_configs():
    ap = cli.build_parser()
    train_args = ap.parse_args(["train", "--kb", "k", "--train", "t", "--hops", "1", "--out", "o"])
    defaults = TrainConfig()
    for name in ("epochs", "batch_size", "lr", "patience", "seed", "encoder", "encoder_lr", "entities"):
        assert getattr(train_args, name) == getattr(defaults, name), name


def test_version_comes_from_the_distribution(capsys, monkeypatch):
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads(distribution.PYPROJECT.read_text(encoding="utf-8"))["project"]
    with pytest.raises(SystemExit) as exit:
        cli.main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out == f"kgqa {project['version']}\n"
    import kgqa
    import kgqa_kernels

    assert kgqa.__version__ == project["version"] == kgqa_kernels.__version__
    wanted = [distribution._NAME.match(r).group(0) for r in project["optional-dependencies"]["qa"]]
    assert list(distribution.extra_requirements()) == wanted and distribution.missing() == []
    from importlib import metadata
    from importlib.util import find_spec

    assert all(find_spec(distribution.module_name(r)) is not None for r in wanted)

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    # a source tree never installed: both read from pyproject.toml
    monkeypatch.setattr(metadata, "version", not_installed)
    monkeypatch.setattr(metadata, "requires", not_installed)
    distribution.version.cache_clear()
    distribution.extra_requirements.cache_clear()
    try:
        assert distribution.version() == project["version"] and list(distribution.extra_requirements()) == wanted
    finally:
        distribution.version.cache_clear()
        distribution.extra_requirements.cache_clear()


def test_out_holding_a_model_is_replaced_only_with_force(demo, tmp_path, cache, capsys):
    kb, train_qs, _ = demo
    write_questions(tmp_path / "qa.txt", [q for q in train_qs if q.qtype.startswith("1hop")][:40], kb)
    out = tmp_path / "model"
    out.mkdir()
    (out / "config.json").write_text("{}")  # a checkpoint's file: a model is there
    base = ["train", "--kb", str(DEMO / "kb.txt"), "--train", str(tmp_path / "qa.txt"), "--hops", "1", "--out",
            str(out), "--encoder", "scratch", "--epochs", "1"]
    capsys.readouterr()
    assert cli.main(base) == 2
    assert capsys.readouterr().err == f"kgqa train: --out {out} holds a model already; pass --force to replace it\n"
    assert cli.main(["demo", "--out", str(out)]) == 2  # an --out of the demo's own too
    assert capsys.readouterr().err == f"kgqa demo: --out {out} holds a model already; pass --force to replace it\n"
    assert (out / "config.json").read_text() == "{}"
    assert cli.main([*base, "--force", "--quiet", "--json"]) == 0
    printed = capsys.readouterr()
    lines = printed.out.splitlines()  # --quiet: the result line and the JSON, nothing about epochs or files
    assert len(lines) == 2 and lines[0].startswith("trained in ")
    assert printed.err.startswith("kgqa train: warning: 40 training questions") and len(printed.err.splitlines()) == 1
    assert json.loads(lines[1])["out"] == str(out.resolve())
    assert json.loads((out / "config.json").read_text())["train"]["hops"] == 1  # replaced


@pytest.mark.parametrize("raised,status,err", [(KeyboardInterrupt(), 130, "kgqa make-2entity: interrupted\n"),
                                               (BrokenPipeError(32, "Broken pipe"), 141, "")])
def test_an_interrupt_or_a_closed_pipe_is_a_status_without_a_traceback(monkeypatch, capsys, tmp_path, raised,
                                                                        status, err):
    def stopped(args):
        raise raised

    monkeypatch.setattr(cli, "cmd_make_2entity", stopped)
    assert cli.main(["make-2entity", "--kb", str(DEMO / "kb.txt"), "--out", str(tmp_path / "q.txt")]) == status
    assert capsys.readouterr().err == err


def test_cli_train_with_restrict_hops_and_without_topic_types(tmp_path, cache):
    """--restrict-hops on and --no-topic-types, as the checkpoint says."""
    out, train_file = tmp_path / "model", tmp_path / "train.txt"
    train_file.write_text("".join((DEMO / "qa_train.txt").read_text().splitlines(keepends=True)[:200]))
    rc = cli.main(["train", "--kb", str(DEMO / "kb.txt"), "--train", str(train_file), "--hops", "2", "--out", str(out),
                   "--encoder", "scratch", "--epochs", "1", "--no-progress", "--restrict-hops", "on",
                   "--no-topic-types"])
    assert rc == 0
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["restrict_hops"] == "on" and config["model"]["restrict_hops"] is True
    assert config["train"]["topic_types"] is False and config["model"]["topic_types"] is False
