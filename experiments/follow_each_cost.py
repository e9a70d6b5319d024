"""What ``RigelModel.follow_each`` costs at inference: ``forward_learned`` on a batch of noisy 2-hop
MetaQA questions, one entity each (no intersection), with the first branch from the soft seed
(follow_each 0) and from each of its 4 most likely (span, entity) pairs, the model's hops
unrestricted (--restrict-hops off, as ``kgqa train`` makes a model without operations) or
restricted. The model is untrained and the encodings random (the cost does not depend on the
weights); the mentions are today's resolver's (find_mentions). Prints the median of --reps timed
calls, in ms. Backs docs/results.md "Each candidate followed alone".

    PYTHONPATH=. python experiments/follow_each_cost.py METAQA_DIR/kb.txt runs/noisy/2-hop/noisy.txt
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from kgqa.aliases import AliasIndex
from kgqa.entity_facts import EntityFacts
from kgqa.kb import KnowledgeBase
from kgqa.link_batch import LinkInput, collate
from kgqa.mentions import find_mentions
from kgqa.model import RigelModel

DIM = 384  # the default encoder's width (all-MiniLM-L6-v2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kb")
    ap.add_argument("questions", help="experiments/noisy_mentions.py's N-hop/noisy.txt (question TAB answers)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--restrict-hops", choices=("on", "off"), default="off",
                    help="the model's restrict_hops: off is what kgqa train gives a model without operations "
                         "(the noisy-benchmark models)")
    args = ap.parse_args(argv)
    kb = KnowledgeBase.load(args.kb)
    texts = [line.split("\t")[0] for line in open(args.questions, encoding="utf-8")][: args.batch]
    index, g = AliasIndex(kb.entities), torch.Generator().manual_seed(0)
    inputs = []
    for t in texts:
        ms = find_mentions(t, index)
        inputs.append(LinkInput(t, ms, torch.randn(DIM, generator=g), torch.randn(len(ms), DIM, generator=g),
                                torch.randn(len(ms), DIM, generator=g)))
    facts = EntityFacts(kb)
    lb = collate(inputs, facts)
    torch.manual_seed(0)
    model = RigelModel(DIM, kb.num_relations, hops=2, entities="learned", restrict_hops=args.restrict_hops == "on").eval()
    for n in (0, 4):
        model.follow_each = n
        times = []
        with torch.no_grad():
            for _ in range(args.reps + 1):  # the first call warms up
                t0 = time.perf_counter()
                model.forward_learned(lb, facts, kb.sparse, intersection=False)
                times.append(time.perf_counter() - t0)
        print(f"follow_each {n}: {1000 * statistics.median(times[1:]):.1f} ms for {len(texts)} questions "
              f"({kb.num_entities} entities, {torch.get_num_threads()} threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
