"""Bidirectional GRU over variable-length sequences, two ways.

``packed_bigru`` is the reference's way (``pack_padded_sequence`` → ``nn.GRU`` →
``pad_packed_sequence``). ``fused_bigru`` gives the same outputs on the valid steps
(zeros on padding, like ``pad_packed_sequence``) but is much cheaper to train on CPU:

* the input projection of both directions is one large matrix product over the
  whole batch (the packed CPU path projects step by step);
  and only the valid steps are projected;
* the backward direction is run as a forward pass over each sequence reversed
  *within its own length*, so both directions advance together in one batched
  matrix product per step (``baddbmm`` over a leading direction axis);
* sequences are sorted by length so that at step ``t`` only the prefix of the batch
  that is still running is computed — the same work a packed sequence does, without
  its per-step bookkeeping;
* the recurrence has a hand-written backward (:class:`BiGRUScan`) instead of autograd
  through ~10 small operations per step, whose slice gradients the packed path
  materialises as full-size zero tensors at every step.

The gate arithmetic follows ATen's CPU ``GRUCell`` operation by operation
(``r = σ(gi_r + gh_r)``, ``z = σ(gi_z + gh_z)``, ``n = tanh(gi_n + r·gh_n)``,
``h' = (h − n)·z + n``) so the two paths agree to float32 rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def packed_bigru(gru: nn.GRU, x: Tensor, lengths: Tensor) -> Tensor:
    """Reference path: ``x`` [B, T, Din], ``lengths`` [B] → [B, T, 2H], zeros past each length."""
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = gru(packed)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out.contiguous()  # [B, T, 2H]


class _ScanPlan:
    """Index bookkeeping for :class:`BiGRUScan` (all small integer tensors).

    Sequences are sorted by length (descending), so the sequences still running at step
    t are a prefix of ``active[t]`` of them. For step t and sorted position j:
    ``src_f``/``src_b`` = row of the input-gate matrix (one row per valid step, in
    (sequence, time) order) read by the forward/backward direction, ``dst_f``/``dst_b``
    = row of the [B·T] output written; the backward direction runs over each sequence
    reversed within its own length.
    """

    def __init__(self, lengths: Tensor, steps_total: int, device: torch.device):
        B = lengths.shape[0]
        order = torch.argsort(lengths, descending=True, stable=True)
        L = lengths[order]  # [B] sorted
        S = int(L[0])
        self.batch, self.steps_total, self.steps = B, steps_total, S
        self.active = (L.unsqueeze(0) > torch.arange(S).unsqueeze(1)).sum(1).tolist()
        valid = torch.arange(steps_total).unsqueeze(0) < lengths.unsqueeze(1)  # [B, T]
        self.all_valid = bool(valid.all())
        self.rows = valid.reshape(-1).nonzero().squeeze(1)  # valid (b, t) → flat index b·T + t
        row_of = (valid.reshape(-1).cumsum(0) - 1).view(B, steps_total)  # (b, t) → row among valid
        t = torch.arange(S).unsqueeze(1)  # [S, 1]
        b = order.unsqueeze(0)  # [1, B]
        t_rev = (L.unsqueeze(0) - 1 - t).clamp(min=0)  # [S, B]
        t_fwd = t.expand(S, B).clamp(max=steps_total - 1)
        src_f, src_b = row_of[b, t_fwd], row_of[b, t_rev]  # [S, B]
        dst_f, dst_b = b * steps_total + t_fwd, b * steps_total + t_rev
        to = lambda x: x.to(device)  # noqa: E731
        self.src_f = [to(src_f[i, :n]) for i, n in enumerate(self.active)]
        self.src_b = [to(src_b[i, :n]) for i, n in enumerate(self.active)]
        self.dst_f = [to(dst_f[i, :n]) for i, n in enumerate(self.active)]
        self.dst_b = [to(dst_b[i, :n]) for i, n in enumerate(self.active)]


class _FlushDenormals:
    """Denormal floats (|x| < 1.2e-38) flushed to zero inside the scan: gradients that travel
    back through many steps shrink by a factor z < 1 per step and end up denormal, and CPU
    arithmetic on denormals is many times slower. Values that small change no output.
    torch has no getter for the mode; it is restored to the default (off) afterwards."""

    def __enter__(self) -> None:
        torch.set_flush_denormal(True)

    def __exit__(self, *exc) -> None:
        torch.set_flush_denormal(False)


class BiGRUScan(torch.autograd.Function):
    """The recurrent part of a bidirectional GRU, both directions in one batched product per
    step, with a hand-written backward.

    ``gi`` [N, 6H]: input gates x·W_ihᵀ + b_ih of the N valid steps (forward | backward
    direction); ``w_hh_t`` [2, H, 3H]; ``b_hh`` [2, 1, 3H]. Returns [B, T, 2H] with zeros
    past each length (what ``pad_packed_sequence`` gives).

    Autograd over a Python loop records ~10 nodes per step and materialises a zero
    gradient for every slice; here sorting, in-length reversal and padding are folded
    into per-step row gathers/scatters, the backward is one loop of small fused updates,
    and the recurrent weight gradient is a single large product after the loop.
    """

    @staticmethod
    def forward(ctx, gi: Tensor, w_hh_t: Tensor, b_hh: Tensor, plan: _ScanPlan) -> Tensor:  # type: ignore[override]
        with _FlushDenormals():
            return BiGRUScan._forward(ctx, gi, w_hh_t, b_hh, plan)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        with _FlushDenormals():
            return BiGRUScan._backward(ctx, grad_out)

    @staticmethod
    def _forward(ctx, gi: Tensor, w_hh_t: Tensor, b_hh: Tensor, plan: _ScanPlan) -> Tensor:
        H = w_hh_t.shape[1]
        B, T, S = plan.batch, plan.steps_total, plan.steps
        gi_f, gi_b = gi[:, : 3 * H], gi[:, 3 * H:]
        out = gi.new_zeros(B * T, 2 * H)
        out_f, out_b = out[:, :H], out[:, H:]
        keep = any(ctx.needs_input_grad[:3])  # inference: nothing to keep for backward
        hs = gi.new_zeros(S if keep else 1, 2, B, H)  # hidden state after each step (sorted order)
        gates = gi.new_zeros(S if keep else 1, 2, B, 4 * H)  # r, z, n, W_hn·h + b_hn, for backward
        git = gi.new_empty(2, B, 3 * H)
        h = gi.new_zeros(2, B, H)
        for t in range(S):
            n_act = plan.active[t]
            torch.index_select(gi_f, 0, plan.src_f[t], out=git[0, :n_act])
            torch.index_select(gi_b, 0, plan.src_b[t], out=git[1, :n_act])
            gi_t = git[:, :n_act]
            hp = h[:, :n_act]
            gh = torch.baddbmm(b_hh, hp, w_hh_t)  # [2, n, 3H]
            # ATen's GRUCell, operation by operation
            rz = (gh[..., : 2 * H] + gi_t[..., : 2 * H]).sigmoid()
            r, z = rz[..., :H], rz[..., H:]
            n = (gi_t[..., 2 * H:] + gh[..., 2 * H:] * r).tanh()
            h_new = (hp - n) * z + n  # [2, n, H]
            k = t if keep else 0
            hs[k, :, :n_act] = h_new
            if keep:
                g = gates[t, :, :n_act]
                g[..., : 2 * H] = rz
                g[..., 2 * H: 3 * H] = n
                g[..., 3 * H:] = gh[..., 2 * H:]
            out_f.index_copy_(0, plan.dst_f[t], hs[k, 0, :n_act])
            out_b.index_copy_(0, plan.dst_b[t], hs[k, 1, :n_act])
            h = hs[k]
        ctx.plan = plan
        ctx.gi_rows = gi.shape[0]
        ctx.save_for_backward(hs, gates, w_hh_t)
        return out.view(B, T, 2 * H)

    @staticmethod
    def _backward(ctx, grad_out: Tensor):
        hs, gates, w_hh_t = ctx.saved_tensors
        plan: _ScanPlan = ctx.plan
        S, _, B, H = hs.shape
        grad_flat = grad_out.reshape(B * plan.steps_total, 2 * H)
        g_out_f, g_out_b = grad_flat[:, :H], grad_flat[:, H:]
        grad_gi = hs.new_zeros(ctx.gi_rows, 6 * H)
        grad_gi_f, grad_gi_b = grad_gi[:, : 3 * H], grad_gi[:, 3 * H:]
        grad_gh = hs.new_zeros(S, 2, B, 3 * H)  # d(h·W_hhᵀ + b_hh) per step
        w_hh = w_hh_t.transpose(1, 2)  # [2, 3H, H]
        dh = hs.new_zeros(2, B, H)
        gout = hs.new_empty(2, B, H)
        ggi = hs.new_empty(2, B, 3 * H)
        zeros = hs.new_zeros(2, B, H)
        for t in range(S - 1, -1, -1):
            n_act = plan.active[t]
            torch.index_select(g_out_f, 0, plan.dst_f[t], out=gout[0, :n_act])
            torch.index_select(g_out_b, 0, plan.dst_b[t], out=gout[1, :n_act])
            dh_t = dh[:, :n_act] + gout[:, :n_act]
            hp = (hs[t - 1] if t > 0 else zeros)[:, :n_act]
            g = gates[t, :, :n_act]
            r, z, n, ghn = g[..., :H], g[..., H: 2 * H], g[..., 2 * H: 3 * H], g[..., 3 * H:]
            # h = (hp − n)·z + n,  n = tanh(gi_n + r·ghn),  r = σ(·),  z = σ(·)
            d_an = dh_t * (1 - z) * (1 - n * n)
            gg = grad_gh[t, :, :n_act]
            gg[..., :H] = d_an * ghn * r * (1 - r)
            gg[..., H: 2 * H] = dh_t * (hp - n) * z * (1 - z)
            gg[..., 2 * H:] = d_an * r
            gi_t = ggi[:, :n_act]
            gi_t[..., : 2 * H] = gg[..., : 2 * H]
            gi_t[..., 2 * H:] = d_an
            grad_gi_f.index_copy_(0, plan.src_f[t], ggi[0, :n_act])
            grad_gi_b.index_copy_(0, plan.src_b[t], ggi[1, :n_act])
            dh[:, :n_act] = torch.baddbmm(dh_t * z, gg, w_hh)  # [2, n, H]
        # step 0 starts from h = 0, so only steps 1.. contribute to the weight gradient
        grad_w = torch.einsum("sdbh,sdbg->dhg", hs[:-1], grad_gh[1:])  # [2, H, 3H]
        grad_b = grad_gh.sum((0, 2)).unsqueeze(1)  # [2, 1, 3H]
        return grad_gi, grad_w, grad_b, None


def fused_bigru(gru: nn.GRU, x: Tensor, lengths: Tensor) -> Tensor:
    """Fast path with the outputs of :func:`packed_bigru` (see module docstring).

    Uses ``gru``'s parameters (``weight_ih_l0`` …, ``*_reverse``) so both paths share
    one set of weights and one state-dict layout.
    """
    if gru.num_layers != 1 or not gru.bidirectional or not gru.batch_first:
        raise ValueError("fused_bigru supports single-layer, bidirectional, batch_first GRUs only")
    B, T, D = x.shape
    H = gru.hidden_size
    lengths = lengths.to(torch.long).cpu()
    if B == 0:
        return x.new_zeros(B, T, 2 * H)
    if int(lengths.min()) < 1:
        raise ValueError("every sequence needs at least one valid step")
    plan = _ScanPlan(lengths.clamp(max=T), T, x.device)
    flat = x.reshape(B * T, D)
    if not plan.all_valid:  # project only the valid steps, as a packed sequence does
        flat = flat[plan.rows.to(x.device)]
    w_ih = torch.cat([gru.weight_ih_l0, gru.weight_ih_l0_reverse], 0)  # [6H, D]
    b_ih = torch.cat([gru.bias_ih_l0, gru.bias_ih_l0_reverse], 0)  # [6H]
    gi = torch.addmm(b_ih, flat, w_ih.t())  # [N, 6H], one product for both directions
    w_hh_t = torch.stack([gru.weight_hh_l0.t(), gru.weight_hh_l0_reverse.t()], 0)  # [2, H, 3H]
    b_hh = torch.stack([gru.bias_hh_l0, gru.bias_hh_l0_reverse], 0).unsqueeze(1)  # [2, 1, 3H]
    return BiGRUScan.apply(gi, w_hh_t, b_hh, plan)  # [B, T, 2H]
