"""kgqa.checkpoint: a trained model saved (safetensors and JSON, no pickle) and loaded answers the
same. A tampered config.json or model.safetensors is refused with a CheckpointError naming the key
or tensor, before anything is allocated from it; a failed save leaves the previous checkpoint (or
none), never a mix; an encoder named by a checkpoint is never downloaded; and the CLI reports each
of these in one line with exit status 2."""
import errno
import inspect
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from kgqa import CheckpointError, RigelModel, TrainConfig, checkpoint, cli
from kgqa.calibration import Calibration
from kgqa.checkpoint_schema import ENCODERS, MODEL
from kgqa.encoder import SCRATCH, TRANSFORMERS, ScratchEncoder
from kgqa.qa import QA
from kgqa.relation_map import relation_map
from kgqa.resolver import MASKED_LOGIT

DEMO = Path(cli.DEMO_DIR)
ROOT = Path(__file__).resolve().parents[2]
KB_PATH = str(DEMO / "kb.txt")


def test_checkpoints_round_trip(demo, trained_demo, tmp_path):
    kb, _, test_qs = demo
    qa = trained_demo
    qa.save(tmp_path / "model", KB_PATH)
    again = QA.load(tmp_path / "model", kb)
    batch = test_qs[:16]
    torch.testing.assert_close(again.predict(batch)[0], qa.predict(batch)[0])
    assert not list((tmp_path / "model").glob("*.pt")) and not list((tmp_path / "model").glob("*.pkl"))
    # QA.save and QA.load are checkpoint.save and checkpoint.load.
    checkpoint.save(qa, tmp_path / "direct", KB_PATH)
    assert (tmp_path / "direct" / "config.json").read_text() == (tmp_path / "model" / "config.json").read_text()
    torch.testing.assert_close(checkpoint.load(tmp_path / "direct", kb).predict(batch)[0], qa.predict(batch)[0])


def test_the_calibration_is_saved_and_an_old_checkpoint_answers_by_the_default(demo, trained_demo, tmp_path):
    kb, _, test_qs = demo
    qa = trained_demo
    assert qa.calibration.fitted_on > 0  # train fitted it on its validation questions
    qa.save(tmp_path / "model", KB_PATH)
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert Calibration.from_dict(config["calibration"]) == qa.calibration
    assert QA.load(tmp_path / "model", kb).calibration == qa.calibration
    del config["calibration"]  # as written before calibrations existed
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    old = QA.load(tmp_path / "model", kb)
    assert old.calibration == Calibration()
    batch = test_qs[:16]
    torch.testing.assert_close(old.predict(batch)[0], qa.predict(batch, calibrated=False)[0])


# ---- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def untrained(demo):
    """A small QA, not trained (the checks below look at the files, not at the answers)."""
    kb, train_qs, _ = demo
    encoder = ScratchEncoder.build([q.masked for q in train_qs[:200]], dim=16)
    model = RigelModel(encoder.out_dim, kb.num_relations, 2, 2, 32)
    return QA(kb, encoder, model, TrainConfig(hops=2, encoder=SCRATCH, hidden=32, relation_head="ids"))


@pytest.fixture(scope="module")
def saved(untrained, tmp_path_factory):
    d = tmp_path_factory.mktemp("saved") / "model"
    checkpoint.save(untrained, d, KB_PATH, {"valid": {"hits@1": 0.5}})
    return d


@pytest.fixture
def ckpt(saved, tmp_path):
    """A copy of ``saved`` to tamper with."""
    return Path(shutil.copytree(saved, tmp_path / "model"))


@pytest.fixture
def no_network(monkeypatch):
    """Every attempt to open a connection fails, and is recorded."""
    tried = []

    def refuse(*args, **kwargs):
        tried.append(args)
        raise OSError("the tests allow no network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return tried


def refused(load, *names) -> str:
    """The CheckpointError of ``load()``: one line naming each of ``names``."""
    with pytest.raises(CheckpointError) as e:
        load()
    msg = str(e.value)
    assert "\n" not in msg, msg
    for name in names:
        assert name in msg, msg
    return msg


# ---- a tampered config.json --------------------------------------------------------------------

def edit(section, key, value):
    def f(c):
        c[section][key] = value
        return c
    return f


def drop(section, key=None):
    def f(c):
        del (c[section] if key else c)[key or section]
        return c
    return f


def encoder_named(name):
    def f(c):
        c["encoder"] = {"kind": TRANSFORMERS, "name": name, "finetune": False}
        return c
    return f


def learned(c):
    c["train"]["entities"] = c["model"]["entities"] = "learned"
    return c


def duplicated(c):
    return json.dumps(c).replace('"hidden": 32', '"hidden": 32, "hidden": 32', 1)


# (how, the key the message must name; None where the file is no JSON object at all)
TAMPERED = {
    "missing key": (drop("model", "hidden"), "model.hidden"),
    "missing section": (drop("encoder"), "encoder"),
    "missing train key the model answers with": (drop("train", "intersection"), "train.intersection"),
    "unknown key": (edit("model", "layers", 12), "model.layers"),
    "unknown train key": (edit("train", "label_smoothing", 0.1), "train.label_smoothing"),
    "wrong type": (edit("train", "intersection", "yes"), "train.intersection"),
    "bool as int": (edit("model", "hops", True), "model.hops"),
    "float as int": (edit("model", "hidden", 32.0), "model.hidden"),
    "negative": (edit("model", "enc_dim", -1), "model.enc_dim"),
    "zero": (edit("model", "hidden", 0), "model.hidden"),
    "huge size": (edit("model", "hidden", 10**12), "model.hidden"),
    "huge embedding": (edit("encoder", "dim", 10**9), "encoder.dim"),
    "NaN": (edit("train", "lr", float("nan")), "train.lr"),
    "infinity": (edit("train", "warmup", float("inf")), "train.warmup"),
    "string for number": (edit("model", "num_relations", "12"), "model.num_relations"),
    "null for a size": (edit("model", "hidden", None), "model.hidden"),
    "not one of the choices": (edit("train", "entities", "silver"), "train.entities"),
    "unknown relation head": (edit("model", "relation_head", "words"), "model.relation_head"),
    "hub-id encoder": (encoder_named("kgqa-tests/no-such-cached-model"), "encoder.name"),
    "path traversal in the encoder name": (encoder_named("../../../../etc"), "encoder.name"),
    "relative encoder path": (encoder_named("./my-encoder"), "encoder.name"),
    "relative absolute KB path": (edit("kb", "absolute", "../../kb.txt"), "kb.absolute"),
    "a carried KB that is not kb.txt": (edit("kb", "copy", "../../../etc/passwd"), "kb.copy"),
    "a relation listed twice": (lambda c: edit("kb", "relations", c["kb"]["relations"] + c["kb"]["relations"][:1])(
        edit("model", "num_relations", len(c["kb"]["relations"]) + 1)(c)), "kb.relations"),
    "unknown encoder kind": (edit("encoder", "kind", "pickle"), "encoder.kind"),
    "extra nesting": (lambda c: {**c, "model": {"model": c["model"]}}, "model.model"),
    "list for an object": (lambda c: {**c, "kb": [c["kb"]]}, "kb"),
    "list item of the wrong type": (lambda c: edit("kb", "relations", [7] + c["kb"]["relations"][1:])(c),
                                    "kb.relations[0]"),
    "vocabulary word of the wrong type": (lambda c: edit("encoder", "vocab", c["encoder"]["vocab"][:3] + [None])(c),
                                          "encoder.vocab[3]"),
    "train and model disagree": (edit("train", "hops", 3), "train.hops"),
    "relation count disagrees": (edit("model", "num_relations", 14), "model.num_relations"),
    "encoder width disagrees": (edit("model", "enc_dim", 100), "model.enc_dim"),
    "learned entities on a scratch encoder": (learned, "model.entities"),
    "duplicate key": (duplicated, "'hidden'"),
    "not an object": (lambda c: "[1, 2]", None),
    "empty file": (lambda c: "", None),
    "truncated JSON": (lambda c: json.dumps(c)[:200], None),
    "not UTF-8": (lambda c: b"\xff\xfe{}", None),
    "nested too deeply": (lambda c: "[" * 100_000, None),
    "calibration threshold above 1": (edit("calibration", "answer_threshold", 1.5), "calibration.answer_threshold"),
    "calibration slope not positive": (edit("calibration", "slope", 0.0), "calibration.slope"),
    "unknown calibration key": (edit("calibration", "temperature", 2.0), "calibration.temperature"),
    "known word of the wrong type": (edit("calibration", "known_words", ["film", 3]), "calibration.known_words[1]"),
    "calibration not an object": (lambda c: {**c, "calibration": 0.5}, "calibration"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_tampered_config_is_refused_naming_the_key(case, ckpt, demo, no_network):
    tamper, key = TAMPERED[case]
    new = tamper(json.loads((ckpt / "config.json").read_text()))
    data = new if isinstance(new, (str, bytes)) else json.dumps(new)
    (ckpt / "config.json").write_bytes(data.encode() if isinstance(data, str) else data)
    refused(lambda: checkpoint.load(ckpt, demo[0]), str(ckpt / "config.json"), *([key] if key else []))
    assert no_network == []


def test_the_schema_names_every_constructor_argument():
    """The schema's sections are what the code writes: RigelModel's arguments, the encoders' config()."""
    assert set(MODEL) == set(inspect.signature(RigelModel).parameters)
    assert set(ENCODERS[SCRATCH]) == set(ScratchEncoder(["<pad>", "<unk>"], 4).config())


def test_sizes_within_the_limits_are_checked_against_the_file_before_allocating(ckpt, demo):
    """Each size within its limit, together 16 GB of weights (hidden 65536 x enc_dim 65536):
    refused from model.safetensors' header, naming the first tensor, with nothing allocated."""
    config = json.loads((ckpt / "config.json").read_text())
    config["train"]["hidden"] = config["model"]["hidden"] = 65536
    config["model"]["enc_dim"], config["encoder"]["dim"] = 65536, 32768
    (ckpt / "config.json").write_text(json.dumps(config))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    refused(lambda: checkpoint.load(ckpt, demo[0]), str(ckpt / "model.safetensors"), "'model.hidden.0.weight'",
            "[65536, 65536]")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 2**20  # less than a GiB more


def test_unknown_top_level_keys_are_the_callers_records(ckpt, demo):
    qa = checkpoint.load(ckpt, demo[0])
    assert qa.config["valid"] == {"hits@1": 0.5}


def test_save_refuses_what_load_would_refuse(untrained, tmp_path):
    bad = QA(untrained.kb, untrained.encoder, untrained.model, replace(untrained.cfg, hops=3))
    refused(lambda: checkpoint.save(bad, tmp_path / "m", KB_PATH), "config.json", "train.hops")
    with pytest.raises(ValueError, match="'model'"):
        checkpoint.save(untrained, tmp_path / "m", KB_PATH, {"model": {}})
    assert not (tmp_path / "m").exists()


# ---- tampered weights ---------------------------------------------------------------------------

def setting(name, make):
    def f(t):
        t[name] = make(t.get(name))
    return f


def poke(name, index, value):
    def f(t):
        t[name][index] = value
    return f


WEIGHTS_TAMPERED = {
    "integer": (setting("model.hidden.0.weight", lambda w: w.long()), "'model.hidden.0.weight' is I64"),
    "float64": (setting("encoder.embed.weight", lambda w: w.double()), "'encoder.embed.weight' is F64"),
    "NaN": (poke("model.hop_head.bias", 0, float("nan")), "'model.hop_head.bias' holds 1 NaN"),
    "infinity": (poke("encoder.embed.weight", (3, 1), float("inf")), "'encoder.embed.weight' holds 1 NaN or infinite"),
    "wrong shape": (setting("model.relation_head.weight", lambda w: w[:-1]), "'model.relation_head.weight' has shape"),
    "missing tensor": (lambda t: t.pop("model.relation_head.bias"), "'model.relation_head.bias' is missing"),
    "extra tensor": (setting("model.backdoor", lambda w: torch.zeros(3)), "'model.backdoor' is not part"),
    "extra encoder tensor": (setting("encoder.extra", lambda w: torch.zeros(3)), "'encoder.extra' is not part"),
}


@pytest.mark.parametrize("case", list(WEIGHTS_TAMPERED))
def test_tampered_weights_are_refused_naming_the_tensor(case, ckpt, demo):
    tamper, words = WEIGHTS_TAMPERED[case]
    tensors = load_file(str(ckpt / "model.safetensors"))
    tamper(tensors)
    save_file(tensors, str(ckpt / "model.safetensors"))
    refused(lambda: checkpoint.load(ckpt, demo[0]), str(ckpt / "model.safetensors"), words)


@pytest.mark.parametrize("case", ["garbage", "truncated", "missing"])
def test_a_weights_file_that_is_no_safetensors_is_refused(case, ckpt, demo):
    path = ckpt / "model.safetensors"
    if case == "garbage":
        path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header at all")
    elif case == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.unlink()
    refused(lambda: checkpoint.load(ckpt, demo[0]), str(path))


# ---- writing: the whole directory or nothing ----------------------------------------------------

def disk_full(*args):
    """A writer that gets part of its file out, then meets a full disk."""
    Path(args[-1]).write_bytes(b"\0" * 100)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def snapshot(d):
    return {p.name: p.read_bytes() for p in d.iterdir()}


@pytest.mark.parametrize("writer", ["save_file", "_write_config"])
def test_a_failed_save_leaves_the_previous_checkpoint(writer, untrained, saved, tmp_path, monkeypatch, demo):
    runs = tmp_path / "runs"
    out = Path(shutil.copytree(saved, runs / "m"))
    before = snapshot(out)
    monkeypatch.setattr(checkpoint, writer, disk_full)
    refused(lambda: checkpoint.save(untrained, out, KB_PATH, {"again": True}), str(out), "No space left on device",
            "unchanged")
    assert snapshot(out) == before and os.listdir(runs) == ["m"]  # no temporary directory left either
    checkpoint.load(out, demo[0])
    monkeypatch.undo()
    checkpoint.save(untrained, out, KB_PATH, {"again": True})  # a save that works replaces it
    assert json.loads((out / "config.json").read_text())["again"] is True and os.listdir(runs) == ["m"]


def test_a_failed_first_save_leaves_no_directory(untrained, tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "_write_config", disk_full)
    refused(lambda: checkpoint.save(untrained, tmp_path / "runs" / "m", KB_PATH), "nothing was written")
    assert os.listdir(tmp_path / "runs") == []


def test_a_failed_rename_puts_the_previous_checkpoint_back(untrained, saved, tmp_path, monkeypatch):
    out = Path(shutil.copytree(saved, tmp_path / "m"))
    before = snapshot(out)
    rename = os.rename

    def fail_into_place(src, dst):
        if str(src).endswith(".tmp"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        rename(src, dst)

    monkeypatch.setattr(os, "rename", fail_into_place)
    refused(lambda: checkpoint.save(untrained, out, KB_PATH), str(out), "unchanged")
    assert snapshot(out) == before and os.listdir(tmp_path) == ["m"]


def test_save_replaces_only_a_checkpoint(untrained, tmp_path):
    (tmp_path / "file").write_text("mine")
    refused(lambda: checkpoint.save(untrained, tmp_path / "file", KB_PATH), "not a directory")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    refused(lambda: checkpoint.save(untrained, tmp_path / "d", KB_PATH), "'notes.txt'")
    assert (tmp_path / "file").read_text() == (tmp_path / "d" / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path / "d")) == ["notes.txt"]


# ---- an encoder named by a checkpoint: local files only -----------------------------------------

@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A transformers encoder in a local directory: BERT with 8-wide vectors and a 10-word vocabulary."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny-bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "who", "directed", "ne", "what", "films"]
    (d / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(d / "vocab.txt")).save_pretrained(d)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(words), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16, max_position_embeddings=64)).save_pretrained(d)
    return d


def transformers_qa(kb, name, finetune=False):
    from kgqa.encoder import TransformerEncoder

    encoder = TransformerEncoder(name, finetune=finetune)
    return QA(kb, encoder, RigelModel(encoder.out_dim, kb.num_relations, 2, 2, 16),
              TrainConfig(hops=2, encoder=name, hidden=16, finetune_encoder=finetune, relation_head="ids"))


def test_a_local_encoder_is_recorded_absolute_and_loaded_offline(tiny_bert, demo, tmp_path, monkeypatch, no_network):
    kb, _, test_qs = demo
    for finetune in (False, True):
        monkeypatch.chdir(tiny_bert.parent)
        qa = transformers_qa(kb, tiny_bert.name, finetune)  # relative to the working directory
        out = tmp_path / f"m{finetune}"
        qa.save(out, KB_PATH)
        config = json.loads((out / "config.json").read_text())
        assert config["encoder"] == {"kind": TRANSFORMERS, "name": str(tiny_bert), "finetune": finetune}
        assert set(ENCODERS[TRANSFORMERS]) == set(config["encoder"])
        assert any(k.startswith("encoder.") for k in load_file(str(out / "model.safetensors"))) == finetune
        monkeypatch.chdir(tmp_path)  # the checkpoint does not depend on where it is loaded from
        again = checkpoint.load(out, kb)
        torch.testing.assert_close(again.predict(test_qs[:4])[0], qa.predict(test_qs[:4])[0])
    # A fine-tuned encoder's tensors are checked against the encoder it names.
    tensors = load_file(str(out / "model.safetensors"))
    tensors["encoder.model.pooler.dense.bias"] = torch.zeros(3)
    save_file(tensors, str(out / "model.safetensors"))
    refused(lambda: checkpoint.load(out, kb), "'encoder.model.pooler.dense.bias' has shape [3], expected [8]")
    assert no_network == []


def test_a_hub_id_loads_only_from_the_local_cache(tiny_bert, demo, tmp_path, monkeypatch, no_network):
    """An encoder saved under a model id loads from the Hugging Face cache, without HF_HUB_OFFLINE
    and without a connection; not cached, it is refused naming encoder.name."""
    import huggingface_hub.constants

    kb, _, test_qs = demo
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    cache = tmp_path / "hub"
    snapshot_dir = cache / "models--kgqa-tests--tiny" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_bert, snapshot_dir)
    (cache / "models--kgqa-tests--tiny" / "refs").mkdir()
    (cache / "models--kgqa-tests--tiny" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    qa = transformers_qa(kb, str(tiny_bert))
    qa.save(tmp_path / "m", KB_PATH)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["encoder"]["name"] = "kgqa-tests/tiny"
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    again = checkpoint.load(tmp_path / "m", kb)
    torch.testing.assert_close(again.predict(test_qs[:4])[0], qa.predict(test_qs[:4])[0])
    shutil.rmtree(cache)
    refused(lambda: checkpoint.load(tmp_path / "m", kb), "config.json: encoder.name: 'kgqa-tests/tiny'",
            "never downloaded")
    assert no_network == []


# ---- the command line: one line, exit status 2 --------------------------------------------------

def test_cli_train_refuses_an_out_it_could_not_replace_before_training(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert cli.main(["train", "--kb", KB_PATH, "--train", str(DEMO / "qa_train.txt"), "--hops", "1",
                     "--out", str(tmp_path), "--encoder", "scratch", "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # not even the KB was read
    assert captured.err.count("\n") == 1 and "'notes.txt'" in captured.err


def test_cli_train_reports_a_full_disk_in_one_line(tmp_path, cache, monkeypatch, capsys):
    lines = (DEMO / "qa_train.txt").read_text(encoding="utf-8").splitlines()[:80]
    (tmp_path / "qa.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setattr(checkpoint, "save_file", disk_full)
    out = tmp_path / "runs" / "m"
    assert cli.main(["train", "--kb", KB_PATH, "--train", str(tmp_path / "qa.txt"), "--hops", "1", "--out", str(out),
                     "--encoder", "scratch", "--epochs", "1", "--no-progress", "--device", "cpu",
                     "--valid-fraction", "0"]) == 2  # 0: no too-few-to-validate warning on standard error
    err = capsys.readouterr().err
    assert err == f"kgqa train: {out}: cannot write the checkpoint (No space left on device); nothing was written\n"
    assert os.listdir(out.parent) == []


def tamper_hidden(d):
    config = json.loads((d / "config.json").read_text())
    config["model"]["hidden"] = 10**12
    (d / "config.json").write_text(json.dumps(config))
    return "config.json: model.hidden: 1000000000000 is above the limit 65536"


def tamper_nan(d):
    tensors = load_file(str(d / "model.safetensors"))
    tensors["model.hidden.0.weight"][0, 0] = float("nan")
    save_file(tensors, str(d / "model.safetensors"))
    return "tensor 'model.hidden.0.weight' holds 1 NaN or infinite values"


@pytest.mark.parametrize("command,tamper", [("eval", tamper_hidden), ("ask", tamper_nan)])
def test_cli_on_a_tampered_checkpoint_exits_2_with_one_line(command, tamper, ckpt, tmp_path):
    words = tamper(ckpt)
    args = {"eval": ["--questions", str(DEMO / "qa_test.txt")], "ask": ["who directed [The Golden Storm]"]}[command]
    env = dict(os.environ, HF_HUB_OFFLINE="1", KGQA_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "kgqa", command, "--model", str(ckpt), "--device", "cpu", *args],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"kgqa {command}: {ckpt}") and done.stderr.count("\n") == 1, done.stderr
    assert words in done.stderr


# ---- portable: where the KB is found ------------------------------------------------------------

def lines_of_demo_kb():
    return (DEMO / "kb.txt").read_text(encoding="utf-8").splitlines()


def config_of(d):
    return json.loads((Path(d) / "config.json").read_text())


def scores(qa, questions):
    return qa.predict(questions)[0]


def test_kgqa_train_records_the_kb_relative_and_a_model_moved_with_it_finds_it(tmp_path, cache, capsys):
    """Train tiny, move the model directory and its KB together, load: the same answers."""
    pair = tmp_path / "project"
    (pair / "data").mkdir(parents=True)
    shutil.copy(DEMO / "kb.txt", pair / "data" / "kb.txt")
    lines = (DEMO / "qa_train.txt").read_text(encoding="utf-8").splitlines()[:40]
    (pair / "data" / "qa.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert cli.main(["train", "--kb", str(pair / "data" / "kb.txt"), "--train", str(pair / "data" / "qa.txt"),
                     "--hops", "1", "--out", str(pair / "runs" / "m"), "--encoder", "scratch", "--epochs", "1",
                     "--no-progress", "--device", "cpu", "--no-copy-kb"]) == 0
    kb_record = config_of(pair / "runs" / "m")["kb"]
    assert kb_record["path"] == "../../data/kb.txt" and kb_record["copy"] is None
    assert kb_record["absolute"] == str((pair / "data" / "kb.txt").resolve())
    assert sorted(os.listdir(pair / "runs" / "m")) == ["config.json", "model.safetensors"]
    before = checkpoint.load(pair / "runs" / "m")
    questions = read_questions_of(before, pair / "data" / "qa.txt")[:8]
    moved = Path(shutil.move(pair, tmp_path / "elsewhere"))
    assert not Path(kb_record["absolute"]).exists()  # only the relative path can find it now
    after = checkpoint.load(moved / "runs" / "m")
    torch.testing.assert_close(scores(after, questions), scores(before, questions))
    capsys.readouterr()
    assert cli.main(["ask", "--model", str(moved / "runs" / "m"), "--device", "cpu", questions[0].text]) == 0
    assert capsys.readouterr().out.startswith(f"Q: {questions[0].text}\n")


def read_questions_of(qa, path):
    from kgqa import read_questions

    return read_questions(path, qa.kb)[0]


@pytest.fixture
def kb_file(tmp_path):
    """The demo KB's file copied into this test's folder: kb/kb.txt."""
    (tmp_path / "kb").mkdir()
    return Path(shutil.copy(DEMO / "kb.txt", tmp_path / "kb" / "kb.txt"))


def test_a_model_moved_alone_finds_its_kb_by_the_absolute_path(untrained, kb_file, tmp_path, cache, demo):
    checkpoint.save(untrained, tmp_path / "runs" / "m", str(kb_file), copy_kb=False)
    moved = Path(shutil.move(tmp_path / "runs", tmp_path / "deeper" / "still" / "runs"))
    assert not (moved / "m" / config_of(moved / "m")["kb"]["path"]).exists()
    qa = checkpoint.load(moved / "m")
    assert qa.kb.entities == demo[0].entities
    torch.testing.assert_close(scores(qa, demo[2][:8]), scores(untrained, demo[2][:8]))


def test_a_model_carries_a_small_kb_and_answers_over_it_when_the_kb_is_gone(untrained, kb_file, tmp_path, cache,
                                                                              demo):
    checkpoint.save(untrained, tmp_path / "m", str(kb_file))  # the demo's 2,570 facts: carried by default
    assert config_of(tmp_path / "m")["kb"]["copy"] == "kb.txt"
    kb_file.unlink()
    moved = Path(shutil.move(tmp_path / "m", tmp_path / "other" / "m"))
    qa = checkpoint.load(moved)
    kb = demo[0]
    assert qa.kb.entities == kb.entities and qa.kb.relations == kb.relations and torch.equal(qa.kb.triples, kb.triples)
    torch.testing.assert_close(scores(qa, demo[2][:8]), scores(untrained, demo[2][:8]))
    # A save over the directory replaces the copy with the directory; kb.txt is the checkpoint's own.
    checkpoint.save(untrained, moved, None, copy_kb=False)
    assert sorted(os.listdir(moved)) == ["config.json", "model.safetensors"]


def test_the_kb_is_carried_as_save_is_told(untrained, kb_file, tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "COPY_KB_MAX_FACTS", 100)  # the demo KB is now "large"
    checkpoint.save(untrained, tmp_path / "auto", str(kb_file))
    checkpoint.save(untrained, tmp_path / "forced", str(kb_file), copy_kb=True)
    assert not (tmp_path / "auto" / "kb.txt").exists() and config_of(tmp_path / "auto")["kb"]["copy"] is None
    assert (tmp_path / "forced" / "kb.txt").is_file() and config_of(tmp_path / "forced")["kb"]["copy"] == "kb.txt"


def test_a_kb_found_nowhere_is_refused_naming_where_it_was_looked_for(untrained, kb_file, tmp_path):
    checkpoint.save(untrained, tmp_path / "m", str(kb_file), copy_kb=False)
    kb_file.unlink()
    refused(lambda: checkpoint.load(tmp_path / "m"), "config.json: kb.path", str(kb_file), "pass the KB (--kb)")


def test_a_checkpoint_with_an_absolute_kb_path_still_loads(saved, tmp_path, demo):
    """What kgqa wrote before relative paths: "path" absolute, no "absolute" or "copy"."""
    old = Path(shutil.copytree(saved, tmp_path / "old"))
    config = config_of(old)
    config["kb"] = {"path": KB_PATH, "relations": config["kb"]["relations"], "num_entities": 733}
    (old / "config.json").write_text(json.dumps(config))
    (old / "kb.txt").unlink(missing_ok=True)
    qa = checkpoint.load(Path(shutil.move(old, tmp_path / "moved" / "old")))
    assert qa.kb.entities == demo[0].entities


def test_a_kb_file_in_the_model_directory_is_not_taken_for_the_carried_copy(untrained, tmp_path):
    """A kb.txt that config.json does not name as the carried copy is the user's: never replaced."""
    d = tmp_path / "m"
    checkpoint.save(untrained, d, KB_PATH, copy_kb=False)
    (d / "kb.txt").write_text("mine|r|yours\n")
    refused(lambda: checkpoint.save(untrained, d, KB_PATH), "'kb.txt'")
    assert (d / "kb.txt").read_text() == "mine|r|yours\n"


# ---- a KB that changed since training -----------------------------------------------------------

@pytest.fixture(scope="module")
def trained_dir(trained_demo, tmp_path_factory):
    """The trained demo model saved, without a copy of its KB."""
    d = tmp_path_factory.mktemp("trained") / "model"
    checkpoint.save(trained_demo, d, KB_PATH, copy_kb=False)
    return d


def load_over(d, path):
    from kgqa import KnowledgeBase

    return checkpoint.load(d, KnowledgeBase.load(path))


def by_name(qa, questions, names):
    """The scores of ``questions`` (re-read over qa's KB by text) at the entities ``names``."""
    return scores(qa, by_topic(qa, [q.text for q in questions]))[:, [qa.kb.entity_ids[n] for n in names]]


def test_a_kb_with_more_entities_and_facts_serves_the_model(trained_demo, trained_dir, demo, write, cache, recwarn):
    kb, _, test_qs = demo
    lines = lines_of_demo_kb()
    # A new island of facts: the old entities score as before, the new ones never.
    island = write("island.txt", "\n".join(lines + ["Newcomer One|directed_by|Newcomer Two",
                                                    "Newcomer Two|starred_actors|Newcomer Three"]) + "\n")
    qa = load_over(trained_dir, island)
    assert qa.kb.num_entities == kb.num_entities + 3 and not recwarn.list
    new, old = scores(qa, test_qs[:32]), scores(trained_demo, test_qs[:32])
    torch.testing.assert_close(new[:, : kb.num_entities], old)
    assert (new[:, kb.num_entities :] <= 0).all()
    # A new fact about an old film: who directed it gains an answer the model reaches.
    film = kb.entities[kb.triples[0, 0]]
    grown = write("grown.txt", "\n".join(lines + [f"{film}|directed_by|Newcomer Director"]) + "\n")
    qa = load_over(trained_dir, grown)
    top = scores(qa, by_topic(qa, [f"who directed [{film}]"]))[0]
    directors = [kb.entities[o] for s, p, o in kb.triples.tolist() if s == kb.entity_ids[film] and
                 kb.relations[p] == "directed_by"]
    ranked = [qa.kb.entities[e] for e in top.topk(len(directors) + 1).indices.tolist()]
    assert sorted(ranked) == sorted(directors + ["Newcomer Director"]), ranked


def test_a_kb_with_fewer_entities_serves_questions_about_the_rest(trained_demo, trained_dir, demo, write, cache):
    kb, _, test_qs = demo
    film = kb.entities[kb.triples[0, 0]]
    kept = [line for line in lines_of_demo_kb() if not line.startswith(film + "|")]
    qa = load_over(trained_dir, write("smaller.txt", "\n".join(kept) + "\n"))
    assert film not in qa.kb.entity_ids and qa.kb.num_entities < kb.num_entities
    asked = by_topic(qa, [q.text for q in test_qs if all(kb.entities[t] in qa.kb.entity_ids for t in q.topics)][:8])
    assert len(asked) == 8 and (scores(qa, asked).amax(1) > 0).all()
    refusal = f"  cannot answer: topic entity {film!r} is not in the KB"
    cli._import_model_layer()  # explain is called here directly, not through main(), which imports for it
    assert cli.explain(qa, f"who directed [{film}]").splitlines()[1].startswith(refusal)


def by_topic(qa, texts):
    """Questions over qa's KB, their [bracketed] names read exactly."""
    from kgqa.questions import Question, parse_question

    return [Question(t, parse_question(t, qa.kb, forgiving=False), []) for t in texts]


def test_relations_in_another_order_are_matched_by_name(trained_demo, trained_dir, demo, write, cache, recwarn):
    """The KB's lines reversed: other relation ids and other entity ids, the same answers."""
    kb, _, test_qs = demo
    qa = load_over(trained_dir, write("reversed.txt", "\n".join(reversed(lines_of_demo_kb())) + "\n"))
    assert qa.kb.relations != kb.relations and sorted(qa.kb.relations) == sorted(kb.relations)
    assert not recwarn.list
    questions = test_qs[:32]
    torch.testing.assert_close(by_name(qa, questions, kb.entities), scores(trained_demo, questions))


def test_new_relations_and_one_warning(trained_demo, trained_dir, demo, write, cache):
    """A names head (the default) scores a relation it was not trained on by its name; an ids head
    never follows it."""
    kb, _, test_qs = demo
    a, b = kb.entities[kb.triples[0, 0]], kb.entities[kb.triples[1, 0]]
    lines = [f"{a}|remake_of|{b}"] + lines_of_demo_kb()  # first: the new relation gets id 0
    with pytest.warns(checkpoint.KBWarning) as caught:
        qa = load_over(trained_dir, write("more.txt", "\n".join(lines) + "\n"))
    assert len(caught) == 1 and "1 relation the model was not trained on, which it scores by their names" in str(
        caught[0].message)
    assert "'remake_of'" in str(caught[0].message) and "~inv" not in str(caught[0].message)
    new = [qa.kb.relation_ids["remake_of"], qa.kb.relation_ids["remake_of~inv"]]
    assert qa.cfg.relation_head == "names" and (qa.model.relation_head.bias[..., new] == 0).all()
    # by its name: a little weight from the head, not none (each hop then takes only the relations
    # its set has facts of: kgqa.model.RigelModel.restrict_hops)
    qa.predict(test_qs[:16])  # reads the KB's relation names into the head
    with torch.no_grad():
        rel, _ = qa.model.heads(qa.encode(test_qs[:16]))
    assert (rel[..., new] > 0).all()
    old = [qa.kb.relation_ids[r] for r in kb.relations]
    torch.testing.assert_close(qa.model.relation_head.bias[..., old], trained_demo.model.relation_head.bias)
    # An ids head: the new relation's logit masked, so exactly no weight whatever the question
    ids = RigelModel(**{**trained_demo.model.dims, "relation_head": "ids"})
    ids.remap_relations(relation_map(kb.relations, qa.kb.relations))
    assert (ids.relation_head.bias.view(-1, qa.kb.num_relations)[:, new] == MASKED_LOGIT).all()
    assert (ids.relation_head.weight.view(-1, qa.kb.num_relations, ids.dims["hidden"])[:, new] == 0).all()


def test_a_trained_relation_missing_from_the_kb_is_refused_naming_it(trained_dir, write, cache):
    lines = [line for line in lines_of_demo_kb() if "|written_by|" not in line]
    msg = refused(lambda: load_over(trained_dir, write("less.txt", "\n".join(lines) + "\n")),
                  "config.json: kb.relations", "lacks 1 relation the model was trained on: 'written_by'")
    assert "~inv" not in msg


def test_kgqa_ask_warns_of_new_relations_in_one_line(trained_dir, demo, write, cache, capsys):
    kb = demo[0]
    film = kb.entities[kb.triples[0, 0]]
    more = write("more.txt", "\n".join(lines_of_demo_kb() + [f"{film}|remake_of|{film} (1990)"]) + "\n")
    assert cli.main(["ask", "--model", str(trained_dir), "--kb", str(more), "--device", "cpu",
                     f"who directed [{film}]"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("kgqa ask: warning: ") and err.count("\n") == 1 and "'remake_of'" in err


def test_relation_map_and_remapping_the_per_relation_parameters():
    from kgqa.relation_map import NEW, relation_map

    assert relation_map(["a", "b"], ["a", "b"]) is None
    assert relation_map(["a", "b"], ["b", "c", "a"]).tolist() == [1, NEW, 0]
    with pytest.raises(ValueError, match=r"lacks 2 relations the model was trained on: 'a', 'c'$"):
        relation_map(["a", "b", "c", "a~inv", "b~inv", "c~inv"], ["b", "b~inv"])
    with pytest.raises(ValueError, match="'b' twice"):
        relation_map(["a"], ["a", "b", "b"])
    # Every per-relation parameter follows the map, the entity resolver's included.
    torch.manual_seed(0)
    model = RigelModel(8, 4, hops=2, branches=2, hidden=6, entities="learned")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mapping = torch.tensor([2, NEW, 0, 3, 1])
    model.remap_relations(mapping)
    assert model.num_relations == model.dims["num_relations"] == 5
    w = model.relation_head.weight.view(4, 5, 6)
    torch.testing.assert_close(w[:, [0, 2, 3, 4]], before["relation_head.weight"].view(4, 4, 6)[:, [2, 0, 3, 1]])
    assert (w[:, 1] == 0).all() and (model.relation_head.bias.view(4, 5)[:, 1] < -1e3).all()
    torch.testing.assert_close(model.resolver.asks.weight[[0, 2, 3, 4]], before["resolver.asks.weight"][[2, 0, 3, 1]])
    assert (model.resolver.asks.weight[1] == 0).all() and model.resolver.asks.bias[1] == 0
    rel, _ = model.heads(torch.randn(3, 8))
    assert rel.shape == (3, 2, 2, 5) and (rel[..., 1] == 0).all()
    torch.testing.assert_close(rel.sum(-1), torch.ones(3, 2, 2))


def test_a_checkpoint_from_before_restrict_hops_and_topic_types_loads_as_it_was(saved, tmp_path, demo):
    """restrict_hops, restrict_learned, follow_each and topic_types absent from "model" and "train"
    (written before them): the schema's legacy value, False (0), and the model answers as it was
    trained: every relation at every hop, and no topic_types weight (the file has none)."""
    qa = checkpoint.load(saved, demo[0])
    assert qa.model.restrict_hops and qa.cfg.restrict_hops == "auto" and qa.model.topic_types is not None
    assert qa.model.restrict_learned
    config = json.loads((saved / "config.json").read_text())
    old_dir = Path(shutil.copytree(saved, tmp_path / "old"))
    del config["model"]["restrict_learned"], config["model"]["follow_each"]
    for section in ("model", "train"):
        del config[section]["restrict_hops"], config[section]["topic_types"]
    (old_dir / "config.json").write_text(json.dumps(config))
    weights = load_file(old_dir / "model.safetensors")
    del weights["model.topic_types.weight"]
    save_file(weights, old_dir / "model.safetensors")
    old = checkpoint.load(old_dir, demo[0])
    assert not old.model.restrict_hops and old.cfg.restrict_hops == "off" and old.model.topic_types is None
    assert not old.model.restrict_learned and old.model.follow_each == 0  # the soft seed, as every model before
    batch = [q for q in demo[2] if len(q.topics) == 1][:16]
    topics = [q.topics for q in batch]
    with torch.no_grad():
        q = qa.encode(batch)
        free, _ = old.model.heads(q)  # every relation, at every hop
        torch.testing.assert_close(old.model(q, topics, old.sparse).relations, free)
        assert not torch.allclose(qa.model(q, topics, qa.sparse).relations, free)
