"""Data-parallel training on ``torchrun``: the process group, each rank's shard of a batch, and the reductions.

``torchrun --standalone --nproc_per_node=N -m pyrovae train ...`` starts N processes with ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` set; :func:`from_env` joins them into one process group (``nccl``
on CUDA, ``gloo`` on the CPU). Every rank draws the same shuffled order and the same global batch of
``--batch-size`` rows (binarized alike), and takes its contiguous share (:meth:`Shard.of`); its loss
is weighted by its share of the batch (:meth:`Shard.weight`) so that DDP's mean of the ranks'
gradients is the gradient of the whole batch, exactly as one process computes it, also when the
last batch of an epoch does not divide evenly.

References: S. Li et al., "PyTorch Distributed: Experiences on Accelerating Data Parallel Training",
VLDB 2020 (DDP).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Shard:
    """This process's place among ``world`` data-parallel ranks.

    :param rank: 0 .. world - 1; rank 0 alone evaluates, prints and writes the run directory.
    :param world: the number of processes.
    """

    rank: int
    world: int

    @property
    def main(self) -> bool:
        """Whether this is rank 0."""
        return self.rank == 0

    def of(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of a global ``batch`` ``(B, ...)``: the shares concatenated are the batch.

        A rank whose share is empty (a last batch smaller than the world) gets the batch's first row, to be
        weighted 0 (:meth:`weight`): every rank must take part in every step's all-reduce.
        """
        share = batch.tensor_split(self.world)[self.rank]
        return share if len(share) else batch[:1]

    def weight(self, batch_size: int) -> float:
        """The factor on this rank's loss over its share of a global batch of ``batch_size`` rows: ``b_r W / B``,
        so that the mean over ranks of ``weight * (N / b_r) sum_{i in r} g_i`` is ``(N / B) sum_i g_i``."""
        share = batch_size // self.world + (self.rank < batch_size % self.world)  # tensor_split's sizes
        return share * self.world / batch_size


def from_env() -> Shard | None:
    """The shard of a process started by ``torchrun`` (``WORLD_SIZE`` > 1), its process group initialized; else
    ``None``. On CUDA each rank uses the GPU of its ``LOCAL_RANK``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Shard(dist.get_rank(), dist.get_world_size())


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``values`` over every rank (an all-reduce)."""
    total = values.clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()


def from_rank_0(values: torch.Tensor) -> torch.Tensor:
    """Rank 0's ``values`` on every rank (a broadcast; the other ranks pass a tensor of the same shape)."""
    values = values.clone()
    dist.broadcast(values, src=0)
    return values


def gathered(parts: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """Every rank's ``{index: tensor}`` merged, on every rank (tensors of any shape, gathered on the host)."""
    every: list[dict | None] = [None] * dist.get_world_size()
    dist.all_gather_object(every, {i: t.cpu() for i, t in parts.items()})
    device = next(iter(parts.values())).device if parts else torch.device("cpu")
    return {i: t.to(device) for part in every for i, t in part.items()}


def barrier() -> None:
    """Wait for every rank, where there is a process group."""
    if dist.is_initialized():
        dist.barrier()
