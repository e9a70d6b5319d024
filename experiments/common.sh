# Sourced by the experiment scripts (not run on its own): the repository root, the MetaQA path
# check, a timing wrapper and a summary of a checkpoint's config.json.
# Run the scripts from the environment `make demo` / `make test` set up:
#   . .venv/bin/activate    (python, kgqa and kgqa-bench on PATH)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# metaqa_dir PATH: the absolute path of a MetaQA folder (kb.txt, 1-hop/, 2-hop/, 3-hop/), or exit.
metaqa_dir() {
    local d=$1
    if [[ ! -f "$d/kb.txt" ]]; then
        echo "error: $d/kb.txt not found; pass the folder that holds MetaQA's kb.txt and N-hop/qa_dev.txt" >&2
        exit 2
    fi
    (cd "$d" && pwd)
}

# metaqa_hops SCRIPT ARGS...: sets M (the MetaQA folder, ARGS[0]) and HOPS (the rest, each 1, 2 or
# 3; default all three), or exits with a usage line.
metaqa_hops() {
    local script=$1; shift
    if [[ $# -lt 1 ]]; then
        echo "usage: $script METAQA_DIR [HOPS...]   (METAQA_DIR holds kb.txt and N-hop/qa_dev.txt, N-hop/qa_dev_qtype.txt)" >&2
        exit 2
    fi
    M=$(metaqa_dir "$1"); shift
    if [[ $# -gt 0 ]]; then HOPS=("$@"); else HOPS=(1 2 3); fi
    for N in "${HOPS[@]}"; do [[ $N == [123] ]] || { echo "error: hops must be 1, 2 or 3, got $N" >&2; exit 2; }; done
}

# timed CMD...: runs CMD under `/usr/bin/time -v` where it exists (wall clock and peak RSS, on
# stderr: "Elapsed (wall clock) time" and "Maximum resident set size"); else runs it plainly.
timed() {
    if [[ -x /usr/bin/time ]]; then
        /usr/bin/time -v "$@"
    else
        echo "(no /usr/bin/time: wall clock and peak RSS not reported)" >&2
        "$@"
    fi
}

# show_checkpoint DIR: the kept epoch's validation metrics (per question type when the run had a
# qtype file, entity linking accuracy for learned entities), the epochs and the training time that
# `kgqa train` wrote to DIR/config.json.
show_checkpoint() {
    python - "$1/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
v, h = c["valid"], c["train"]["history"]
if v is None:  # too few questions to validate on, or --valid-fraction 0
    print(f"{sys.argv[1]}: no validation")
else:
    print(f"{sys.argv[1]}: held-out n = {v['n']}, Hits@1 {100 * v['hits@1']:.2f}, Hits@5 {100 * v['hits@5']:.2f}, "
          f"F1 {v['f1']:.3f}" + (f", linking accuracy {100 * v['linking_accuracy']:.2f}%" if "linking_accuracy" in v else ""))
kept = f", kept epoch {c['best_epoch']}" if c.get("best_epoch") else ""
print(f"  training: {c['train_minutes']:.1f} min, {len(h)} epochs{kept}")
for t, m in (v or {}).get("per_qtype", {}).items():
    print(f"  {t:<48} Hits@1 {100 * m['hits@1']:.2f} (n = {m['n']})")
PY
}
