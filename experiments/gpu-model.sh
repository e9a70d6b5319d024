#!/usr/bin/env bash
# The GPU work model's predictions (docs/gpu.md "Predictions for MetaQA and power-law KBs"): the
# follow forward, forward + backward, dx, dr and follow_intersect k = 2 on MetaQA's real KB and on
# power-law KBs of 1M, 10M and 30M facts at Zipf exponents 0.8, 1.1 and 1.3, B = 64, fp32 and
# bf16, H100 and H200 presets, under the merge-path plan and the one-row-per-warp plan before it.
# Predictions of a model, not measurements: no GPU runs. Writes OUT/small/gpu-model.md,.json and
# OUT/30m/gpu-model.md,.json.
#
# Usage: experiments/gpu-model.sh METAQA_DIR
#        OUT=dir experiments/gpu-model.sh METAQA_DIR    (default OUT: runs/experiments/gpu-model)
set -euo pipefail
source "$(dirname "$0")/common.sh"
if [[ $# -ne 1 ]]; then
    echo "usage: $0 METAQA_DIR   (the folder holding MetaQA's kb.txt; OUT=dir sets the output folder)" >&2
    exit 2
fi
M=$(metaqa_dir "$1")
OUT=${OUT:-$REPO/runs/experiments/gpu-model}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
cd "$REPO"

COMMON=(--skews 0.8,1.1,1.3 --gpus h100,h200 --batches 64 --dtypes float32,bfloat16)
timed python -m kgqa_kernels.bench.gpu_model --kbs metaqa,pl-1m,pl-10m "${COMMON[@]}" --metaqa-kb "$M/kb.txt" \
    --out "$OUT/small"
timed python -m kgqa_kernels.bench.gpu_model --kbs pl-30m "${COMMON[@]}" --out "$OUT/30m"
