"""Data-parallel training (DistributedDataParallel, the KB replicated on every rank).

``kgqa train`` under torchrun (``torchrun --nproc_per_node N -m kgqa train ...``) starts the
process group itself (:func:`launch`); ``kgqa.train()`` called in a process group that is
already initialised (world size above 1) trains data-parallel too. What changes against one
process, and nothing else does:

- Sampling: every rank draws the same global batches from the same seeded shuffle (kgqa/batching.py's
  ``batches()``), and rank r runs ``batch[r::N]`` of each (:meth:`World.share`). The global batch is
  ``--batch-size`` whatever N, so the optimisation is that of one process with the same batch.
- Loss weighting: DDP averages the ranks' gradients, so a rank's mean loss is scaled by
  ``N * n_r / b`` (n_r its questions, b the global batch's): the average is then the mean over
  the global batch even when b does not split evenly. A rank whose share is empty (b < N: the
  last batch of a group) runs the batch's first question with scale 0, so every rank takes part
  in every step's all-reduce and all run the same number of steps.
- Gradients: :meth:`World.wrap` wraps the trainable modules (the model, and the scratch encoder;
  a frozen transformers encoder needs no sync) in DistributedDataParallel, behind a forward that
  computes the batch's loss through ``QA.forward``, so gold and learned entities both go through
  DDP's forward. Clipping, the optimiser and the LR schedule then see the same averaged gradient
  on every rank, as one process sees the global batch's. ``qa.model`` stays the plain module:
  checkpoints carry no ``module.`` prefix.
- Decisions: every rank evaluates the whole validation set; early stopping and ``max_minutes``
  use rank 0's numbers, broadcast (:meth:`World.from_main`), so every rank stops after the same
  epoch. Training loss and accuracy are summed over the ranks (:meth:`World.all_sum`).
- Output: only rank 0 logs, shows progress bars and writes the checkpoint.

- Devices: ``kgqa train --device`` (:func:`resolve_device`) picks the CPU or a GPU; under torchrun
  with CUDA every rank takes the GPU ``LOCAL_RANK`` and the process group uses nccl, on the CPU
  gloo (:func:`launch`). The model, the KB and every tensor the model layer builds live on that
  device (kgqa/qa.py's ``QA``).

Tested on the CPU only, with gloo. The CUDA and nccl paths have never run on a GPU (this project
has none): on the CPU, tests/kgqa/test_device.py checks only that the model layer creates no tensor
outside the device it is given. docs/DISTRIBUTED.md has the launches, the tests and timings.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable, List

import torch
import torch.distributed as dist
from torch import nn

from .encoder import SCRATCH


def resolve_device(name="auto") -> torch.device:
    """The device named by ``--device``: "cpu", "cuda", "cuda:N", or "auto" (CUDA when torch sees a
    GPU, else the CPU). Under torchrun with several processes "cuda" is this rank's GPU,
    ``LOCAL_RANK``. A GPU that is not there is a ValueError naming --device here, not a CUDA error
    deep inside the first hop."""
    name = str(name or "auto").strip()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name}: not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise ValueError(f"--device {name}: the model layer runs on cpu or cuda, not {device.type}")
    if not torch.cuda.is_available():
        why = "this torch build has no CUDA" if torch.version.cuda is None else "torch.cuda.is_available() is False"
        raise ValueError(f"--device {name}: no CUDA GPU here ({why}); use --device cpu")
    index = device.index
    if launched():  # one GPU per rank: two ranks on one GPU would fail in nccl
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if index is not None and index != local:
            raise ValueError(f"--device {name}: under torchrun each rank uses the GPU LOCAL_RANK ({local} here); "
                             "pass --device cuda")
        index = local
    elif index is None:
        index = torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: no GPU {index} (torch sees {torch.cuda.device_count()}"
                         f"{'; more processes per node than GPUs?' if launched() else ''})")
    return torch.device("cuda", index)


def backend_for(device) -> str:
    """nccl for CUDA tensors, gloo for the CPU."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


@dataclass
class World:
    """This process's place among the data-parallel ranks (rank 0 of 1 without a process group)."""

    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")  # where the collectives' tensors live

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    # ---- sampling ----------------------------------------------------------------------------

    def share(self, batch: List) -> tuple:
        """(questions, n, scale): this rank's part of a global batch, ``batch[rank::size]``; how many
        of them count (0 when the share is empty and ``questions`` is one padding question); the
        factor for their mean loss, ``size * n / len(batch)``. In one process: (batch, len, 1.0)."""
        if not self.distributed:
            return batch, len(batch), 1.0
        mine = batch[self.rank :: self.size]
        if not mine:
            return batch[:1], 0, 0.0
        return mine, len(mine), self.size * len(mine) / len(batch)

    # ---- gradients -----------------------------------------------------------------------------

    def wrap(self, qa, loss_fn: Callable) -> Callable:
        """``run(questions) = loss_fn(qa, questions)`` (a tuple, the loss first), run through
        DistributedDataParallel over the trainable modules (``run.ddp``); in one process,
        ``loss_fn`` itself."""
        if not self.distributed:
            return lambda questions: loss_fn(qa, questions)
        module = _Trainable(qa, loss_fn)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # Learned entities without intersection leave P(two entities) out of the loss, and a
        # fine-tuned transformers model runs its pooler, which the mean-pooled states never use: DDP
        # has to look for parameters without a gradient then; otherwise every one gets one each step.
        unused = (qa.learned and not qa.cfg.intersection) or (not qa.encoder.frozen and qa.cfg.encoder != SCRATCH)
        ddp = nn.parallel.DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=unused)

        def run(questions):
            loss = ddp(questions)
            rest, module.rest = module.rest, None
            return (loss, *rest)

        run.ddp = ddp
        return run

    # ---- numbers shared by the ranks -----------------------------------------------------------

    def all_sum(self, *values: float) -> tuple:
        """The sums over the ranks (float64), e.g. of per-rank loss sums and counts."""
        if not self.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return tuple(t.tolist())

    def from_main(self, *values: float) -> tuple:
        """Rank 0's values on every rank: decisions (early stopping, time limits) taken once."""
        if not self.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.broadcast(t, src=0)
        return tuple(t.tolist())

    def barrier(self) -> None:
        if self.distributed and self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        elif self.distributed:
            dist.barrier()

    # ---- output ------------------------------------------------------------------------------------

    def main_only(self, log: Callable) -> Callable:
        """``log`` on rank 0; a no-op on the others."""
        return log if self.is_main else (lambda *a, **k: None)

    @contextlib.contextmanager
    def quiet(self):
        """Standard output discarded on ranks other than 0 (standard error, with errors, is kept)."""
        if self.is_main:
            yield
        else:
            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
                yield


class _Trainable(nn.Module):
    """What DDP wraps: the trainable modules, and a forward that runs the loss function, which runs
    ``QA.forward`` (gold entities through ``model(...)``, learned ones through
    ``model.forward_learned(...)``). DDP arms a step's gradient all-reduce in its own forward, so
    both modes have to pass through it. The forward returns the loss alone: with
    find_unused_parameters, DDP counts as used every parameter that the returned tensors depend on,
    and the model's Output holds tensors outside the loss (P(two entities) without intersection),
    whose gradients would never come. The rest of the tuple waits in ``rest``."""

    def __init__(self, qa, loss_fn):
        super().__init__()
        self.model = qa.model
        if not qa.encoder.frozen:
            self.encoder = qa.encoder
        self._qa, self._loss_fn, self.rest = qa, loss_fn, None

    def forward(self, questions):
        loss, *self.rest = self._loss_fn(self._qa, questions)
        return loss


def world() -> World:
    """The current data-parallel world: the default process group if one is initialised with more
    than one rank, else a single process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return World()
    device = torch.device("cpu")
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    return World(dist.get_rank(), dist.get_world_size(), device)


def launched() -> bool:
    """Whether torchrun (or another launcher setting RANK / WORLD_SIZE) started several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def launch(device=None):
    """The World of a ``kgqa train`` process. ``device``: where training runs (as
    :func:`resolve_device` takes it; default the CPU); a GPU becomes the current CUDA device, which
    kernels launched on the current device (Triton's) and nccl use. Under torchrun with more than
    one process, and no process group yet, initialises one from torchrun's environment (gloo for
    the CPU, nccl for CUDA, each rank on the GPU ``LOCAL_RANK``) and destroys it on the way out."""
    device = resolve_device(device or "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    started = False
    if launched() and not dist.is_initialized():
        dist.init_process_group(backend_for(device))
        started = True
    try:
        yield world()
    finally:
        if started:
            dist.destroy_process_group()
