#!/usr/bin/env bash
# What a SparseKB stores per fact and per entity: 1M random facts over 100K entities and 50
# relations, unweighted and weighted. Backs docs/DISTRIBUTED.md "Worked estimate" (24 / 36 bytes
# of index per fact, 16 bytes of row pointers per entity, 24 / 28 bytes of canonical copy per fact);
# the rest of that estimate is arithmetic from these byte counts. The Python is the recorded
# snippet, unchanged (it reads SparseKB internals: it follows SparseKB's storage at the time).
#
# Usage: experiments/sparsekb-bytes.sh      (no data needed)
set -euo pipefail
source "$(dirname "$0")/common.sh"
if [[ $# -ne 0 ]]; then
    echo "usage: $0   (no arguments: the facts are random)" >&2
    exit 2
fi
cd "$REPO"

python -c "
import torch, kgqa_kernels as kk
E, R, F = 100_000, 50, 1_000_000
g = torch.Generator().manual_seed(0)
s, p, o = (torch.randint(0, n, (F,), generator=g) for n in (E, R, E))
for w in (None, torch.rand(F)):
    kb = kk.SparseKB(s, p, o, E, R, weight=w)
    nbytes = lambda ts: sum(t.numel() * t.element_size() for t in ts)
    ptr = nbytes([kb._tensors[0], kb._tensors[4]])
    canon = nbytes([kb.subj, kb.rel, kb.obj] + ([] if kb.weight is None else [kb.weight]))
    print(f'weighted={w is not None}: index {(nbytes(kb._tensors) - ptr) / kb.num_facts:.2f} B/fact, '
          f'entity row pointers {ptr:,} B = {ptr / E:.1f} B/entity, canonical copy {canon / kb.num_facts:.2f} B/fact')
"
