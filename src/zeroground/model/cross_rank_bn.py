"""Training-mode BatchNorm whose result does not depend on how the batch is split.

:func:`split_invariant_batch_norm` is BatchNorm's training forward and backward written
so that a batch of B rows gives the same bits whether it is computed in one process or
split over N ranks (each holding some of the rows):

* every per-channel sum is taken per row first (float32, over that row's positions --
  the same operations on the same numbers whichever process holds the row), then over
  the rows in **float64**, all-reduced across ranks in float64. Float64 is ~2^29 times
  finer than the float32 inputs, so the order in which rows (and ranks) are added no
  longer shows once the statistic is rounded back to float32;
* everything elementwise (centring, scaling, the backward's ``dx``) is float32 from those
  rounded statistics: the same operations on the same numbers in every split.

forward: mean and the centred (two-pass) variance over all ranks' rows; backward: the
per-channel sums of ``dy`` and ``dy * (x - mean)`` all-reduced,
``dx = invstd * w * (dy - mean(dy) - x̂ * mean(dy * x̂))``; the weight and bias gradients are
the local sums (DDP averages them over the ranks), as in ``torch.nn.SyncBatchNorm``.

Why it matters: with torch's own CPU kernel for the channels-last layout the fast model
uses, one process's BatchNorm is off from the exact result by ~1e-6 relative (float32
statistics), and a second process computing the same rows in another grouping is off
differently. The ReLU after the BatchNorm turns such a difference at an activation near 0
into a gradient difference of a whole activation, and the model's two-stage regressor
then amplifies the flips (docs/scaling.md, "DDP training"). So the fast path's training
forward uses this function in one process too (``group=LOCAL``, no collectives), and
DDP's :class:`CrossRankBatchNorm` uses it with the ranks' process group: N ranks × B/N then
compute BatchNorm bit for bit as one process × B.

Why not ``torch.nn.SyncBatchNorm``: it runs only on CUDA-like devices (it raises on CPU
tensors, so on gloo/CPU it cannot be used), and the PSVL fast path calls its BatchNorm
itself, which SyncBatchNorm's module swap would not reach. Outside training, BatchNorm
uses its running statistics (elementwise: nothing to split) and is ``F.batch_norm``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOCAL = "local"  # the "process group" of a batch held by one process: no collectives


def _world(group=None) -> int:
    import torch.distributed as dist

    if group is LOCAL or not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def _all_reduce(t: Tensor, group) -> Tensor:
    if group is not LOCAL:
        import torch.distributed as dist

        dist.all_reduce(t, group=group)
    return t


def _row_sums(t: Tensor) -> Tensor:
    """``[B, C, *]`` -> ``[C]`` float64: per row over its positions (float32), then over rows (float64)."""
    per_row = t.sum(list(range(2, t.dim()))) if t.dim() > 2 else t  # [B, C]
    return per_row.double().sum(0)


class _SplitInvariantBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float, group):
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() // x.shape[1]], dtype=torch.float64)
        n = float(_all_reduce(count, group).item())  # samples × positions over all ranks
        mean = _all_reduce(_row_sums(x), group) / n  # [C] float64
        xc = x - mean.to(x.dtype).view(shape)  # float32, the same in every split
        var = _all_reduce(_row_sums(xc.square()), group) / n  # [C], biased: what BatchNorm normalises by
        invstd = torch.rsqrt(var + eps)  # [C] float64
        scale = invstd if weight is None else invstd * weight.double()
        scale = scale.to(x.dtype).view(shape)
        y = xc * scale if bias is None else torch.addcmul(bias.view(shape), xc, scale)
        ctx.save_for_backward(xc, invstd, weight)
        ctx.group, ctx.n = group, n
        unbiased = var * (n / max(n - 1.0, 1.0))  # what the running variance is fed with
        ctx.mark_non_differentiable(mean, unbiased)
        return y, mean, unbiased

    @staticmethod
    def backward(ctx, dy: Tensor, _dmean, _dvar):
        xc, invstd, weight = ctx.saved_tensors
        shape = [1, -1] + [1] * (xc.dim() - 2)
        local = torch.stack([_row_sums(dy), _row_sums(dy * xc)])  # [2, C] float64: this rank's sums
        grad_weight = grad_bias = None
        if weight is not None:
            grad_weight, grad_bias = (local[1] * invstd).to(weight.dtype), local[0].to(weight.dtype)
        total = _all_reduce(local.clone(), ctx.group) / ctx.n  # [2, C]: means over all ranks
        a = invstd if weight is None else invstd * weight.double()  # dx = a*dy + b*xc + c
        b = -a * invstd * invstd * total[1]
        c = -a * total[0]
        dt = dy.dtype
        dx = torch.addcmul(torch.addcmul(c.to(dt).view(shape), xc, b.to(dt).view(shape)), dy, a.to(dt).view(shape))
        return dx, grad_weight, grad_bias, None, None


def split_invariant_batch_norm(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
                               weight: Tensor | None, bias: Tensor | None, momentum: float, eps: float,
                               group=LOCAL) -> Tensor:
    """Training-mode ``F.batch_norm`` of ``x [B, C, *]`` (any memory layout) over the rows of
    every rank in ``group`` (``LOCAL``: this process's rows only); updates the running
    statistics in place as BatchNorm does."""
    y, mean, unbiased = _SplitInvariantBatchNorm.apply(x, weight, bias, eps, group)
    if running_mean is not None:
        with torch.no_grad():  # in float64 then rounded, as F.batch_norm updates them from its statistics
            running_mean.copy_(running_mean.double() * (1 - momentum) + mean * momentum)
            running_var.copy_(running_var.double() * (1 - momentum) + unbiased * momentum)
    return y


class CrossRankBatchNorm(nn.BatchNorm1d):
    """Drop-in for ``nn.BatchNorm1d`` (same parameters and buffers, so state dicts are
    interchangeable); input ``[B, C, *]`` of any rank >= 2; training statistics over every
    rank of ``process_group`` by :func:`split_invariant_batch_norm`.

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
        momentum = self._momentum()
        if (not self.training and self.running_mean is not None) or _world(self.process_group) == 1:
            # one rank: plain BatchNorm, so a 1-rank DDP job trains bit for bit as plain training
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                self.training or self.running_mean is None, momentum, self.eps)
        track = self.training and self.track_running_stats
        return split_invariant_batch_norm(
            x, self.running_mean if track else None, self.running_var if track else None,
            self.weight if self.affine else None, self.bias if self.affine else None, momentum, self.eps,
            self.process_group)


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
