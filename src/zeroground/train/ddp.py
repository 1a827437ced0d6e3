"""Data-parallel training with torch.distributed: ``torchrun --nproc_per_node=N -m zeroground train --ddp ...``.

One *global* batch of ``train.batch_size`` samples per step, split over the ranks.
Every rank draws the whole global batch exactly as one process does (the epoch's
permutation from (seed, epoch), the segment offsets, query noise and word dropout from
the same generators), then keeps its rows ``rank::world_size`` -- the split
``DistributedSampler`` makes, applied to the global batch rather than to the epoch so
that the random draws are one process's draws. Drawing the batch costs index arithmetic
and padding only; the forward/backward, the expensive part, runs on B/N rows per rank.

Gradients: each rank's loss is its rows' mean times ``rows × N / B``, so DDP's average of
the ranks' gradients is the gradient of the global batch mean, also for a last batch
that does not split evenly. BatchNorm statistics span all ranks
(:class:`zeroground.model.cross_rank_bn.CrossRankBatchNorm`). So N ranks × B/N equal one
process × B to float32 rounding -- except dropout, whose masks come from each rank's own
torch RNG (as in any DDP job); a run with ``model.dropout: 0`` matches exactly.

Rank 0 alone writes config, checkpoints (atomically), metrics, plot and the model
directory; logged losses are all-reduced global means, logged once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from zeroground.errors import ZerogroundError


class DistributedSetupError(ZerogroundError, RuntimeError):
    """``--ddp`` outside a torchrun launch, or a process group that cannot start."""


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rows(self, n: int) -> np.ndarray:
        """Positions of this rank's rows in a global batch of ``n``."""
        return np.arange(n)[self.rank::self.world_size]

    def loss_scale(self, n: int) -> float:
        """Factor making DDP's gradient average equal the global batch mean's gradient."""
        return len(self.rows(n)) * self.world_size / n

    def sum(self, values: list[float]) -> list[float]:
        """All-reduce (sum) a few floats across ranks."""
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()


def init_distributed() -> DistContext:
    """Join the process group torchrun set up (env RANK, WORLD_SIZE, MASTER_ADDR, ...)."""
    import torch.distributed as dist

    missing = [k for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise DistributedSetupError(
            "--ddp runs under torchrun, which sets " + ", ".join(missing) + ": launch with "
            "`torchrun --nproc_per_node=N -m zeroground train --ddp --config C --out RUN`")
    local_rank = int(os.environ["LOCAL_RANK"])
    # The training loop runs on CPU today, so gloo; NCCL comes with a device option in the loop.
    backend, device = "gloo", "cpu"
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend)
        except (RuntimeError, ValueError) as exc:
            raise DistributedSetupError(f"cannot start the {backend} process group: {exc}") from None
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, device)


def wrap_model(model: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    """Cross-rank BatchNorm, then DistributedDataParallel (weights broadcast from rank 0)."""
    from torch.nn.parallel import DistributedDataParallel

    from zeroground.model.cross_rank_bn import convert_cross_rank_batchnorm

    import torch.distributed as dist

    # BatchNorm's collectives get a group of their own, apart from DDP's gradient all-reduces
    convert_cross_rank_batchnorm(model, process_group=dist.new_group(backend="gloo"))
    # find_unused_parameters: the model holds parts a config leaves unused (e.g. the CLIP query encoder)
    return DistributedDataParallel(model, find_unused_parameters=True)


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
