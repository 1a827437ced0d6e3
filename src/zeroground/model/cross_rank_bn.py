"""BatchNorm whose batch statistics span every rank of a torch.distributed job.

Why not ``torch.nn.SyncBatchNorm``: it runs only on CUDA-like devices (it raises on CPU
tensors, so on gloo/CPU it cannot be used), and the PSVL fast path calls
``F.batch_norm`` itself, which SyncBatchNorm's module swap would not reach. This module
computes the same thing on any device and backend: the per-channel sum over the local
batch is all-reduced *through autograd* (``torch.distributed.nn.functional.all_reduce``,
whose backward all-reduces the gradients), then the centred sum of squares likewise
(two passes, as accurate as one process's BatchNorm). With N ranks × B/N samples the
normalised outputs, the gradients and the running statistics equal one process's
BatchNorm over all B samples. Outside training, or without a process group of more than
one rank, it is plain BatchNorm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class CrossRankBatchNorm(nn.BatchNorm1d):
    """Drop-in for ``nn.BatchNorm1d`` (same parameters and buffers, so state dicts are
    interchangeable); input ``[B, C, *]`` of any rank >= 2.

    ``process_group``: the group its collectives run in. Give it a group of its own
    (:func:`convert_cross_rank_batchnorm` does): DDP all-reduces gradient buckets from its
    own thread *during* backward, and collectives of two threads interleaved on one group
    can pair up differently on different ranks.
    """

    process_group = None

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected input [B, C, *], got shape {tuple(x.shape)}")

    def _momentum(self) -> float:
        momentum = self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # cumulative moving average, as nn.BatchNorm
                momentum = 1.0 / float(self.num_batches_tracked)
        return momentum or 0.0

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        if not self.training or _world() == 1:
            momentum = self._momentum()
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                self.training or self.running_mean is None, momentum, self.eps)
        import warnings

        import torch.distributed as dist

        from torch.distributed.nn.functional import all_reduce

        # its successor in _functional_collectives is not differentiable the same way yet
        warnings.filterwarnings("ignore", message=".*distributed.nn.functional.all_reduce is deprecated")

        momentum = self._momentum()
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() // x.shape[1]], dtype=torch.float64, device=x.device)
        dist.all_reduce(count, group=self.process_group)  # samples × positions over all ranks (no gradient needed)
        n = float(count.item())
        mean = all_reduce(x.sum(dims), group=self.process_group) / n  # [C]
        centred = x - mean.view(shape)
        var = all_reduce((centred * centred).sum(dims), group=self.process_group) / n  # [C], biased, as BatchNorm normalises
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(var.detach() * (n / max(n - 1, 1.0)), alpha=momentum)
        return y


def convert_cross_rank_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """Replace every ``nn.BatchNorm1d`` in ``module`` by a :class:`CrossRankBatchNorm` holding
    the same parameter and buffer objects (in place; returns ``module``)."""
    for name, child in list(module.named_children()):
        if type(child) is nn.BatchNorm1d:
            new = CrossRankBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                     child.track_running_stats)
            # the very Parameter and buffer objects: an optimizer built before the swap keeps working
            for key, value in list(child._parameters.items()) + list(child._buffers.items()):
                setattr(new, key, value)
            new.train(child.training)
            new.process_group = process_group
            setattr(module, name, new)
        else:
            convert_cross_rank_batchnorm(child, process_group)
    return module
