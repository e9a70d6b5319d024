"""The exchange every collective method of the sharded KB starts with: each rank says whether its
arguments passed the local checks and a few integers about the call (batch size, dtype, direction,
...). Bad arguments on one rank then raise on every rank, instead of leaving the others waiting in a
collective, and ranks that disagree about the call raise a ValueError."""
from __future__ import annotations

from typing import Collection, Dict, Optional, Sequence

import torch

from .ring import all_gather


class Agreement:
    """What every rank reported to ``agree``, read by field name."""

    def __init__(self, names: Sequence[str], table: torch.Tensor):
        self.names = tuple(names)
        self._table = table  # [N, len(names)] int64, on the CPU

    def column(self, name: str) -> torch.Tensor:
        """[N] int64: the field ``name`` of every rank, by rank."""
        return self._table[:, self.names.index(name)]

    def total(self, name: str) -> int:
        """The field ``name`` summed over the ranks."""
        return int(self.column(name).sum())


def agree(skb, op: str, err: Optional[Exception], fields: Dict[str, int],
          must_agree: Collection[str] = ()) -> Agreement:
    """All-gather ``ok`` (``err`` is None) and the integer ``fields`` of every rank of ``skb``'s
    group; raise on every rank if one rank's arguments were bad (``err`` itself where it is this
    rank's) or a field named in ``must_agree`` differs across the ranks."""
    names = list(fields)
    mine = torch.tensor([int(err is None)] + [int(fields[k]) for k in names], dtype=torch.int64)
    mine = mine.to(skb.device if skb.device is not None else "cpu")
    table = torch.stack(all_gather(skb, mine)).cpu()
    bad = [q for q in range(skb.world_size) if int(table[q, 0]) == 0]
    if bad:
        if err is not None:
            raise err
        raise RuntimeError(
            f"{op}: rank(s) {bad} were given bad arguments and raise the details; every rank "
            f"raises so that none waits in a collective"
        )
    for j, name in enumerate(names, start=1):
        if name in must_agree and not bool((table[:, j] == table[0, j]).all()):
            raise ValueError(
                f"{op}: {name} differs across ranks ({table[:, j].tolist()}, by rank); every rank "
                f"must make the same call"
            )
    return Agreement(names, table[:, 1:])
