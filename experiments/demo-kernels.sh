#!/usr/bin/env bash
# The ops alone against torch.sparse (ReifKB's formulation, COO and CSR) on a generated power-law
# KB of 50,000 entities, 18 relations and 500,000 facts, batch 32, dense x, best of 3: the same
# program as `make demo-kernels` (python -m kgqa_kernels.demo with its defaults). Backs the
# kernel-demo table of docs/results.md (8.9 / 28.6 ms against 161.6 / 299.3 and 128.6 / 292.5 ms;
# largest difference to the COO result 3.8e-6 of the largest output).
#
# Usage: experiments/demo-kernels.sh      (no data needed)
set -euo pipefail
source "$(dirname "$0")/common.sh"
if [[ $# -ne 0 ]]; then
    echo "usage: $0   (no arguments: the KB is generated)" >&2
    exit 2
fi
cd "$REPO"

python -m kgqa_kernels.demo
