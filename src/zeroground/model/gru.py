"""Bidirectional GRU over variable-length sequences, two ways.

``packed_bigru`` is the reference's way (``pack_padded_sequence`` → ``nn.GRU`` →
``pad_packed_sequence``). ``fused_bigru`` gives the same outputs on the valid steps
(zeros on padding, like ``pad_packed_sequence``) but is much cheaper to train on CPU:

* the input projection of both directions is one large matrix product over the
  whole batch (the packed CPU path projects step by step);
* the backward direction is run as a forward pass over each sequence reversed
  *within its own length*, so both directions advance together in one batched
  matrix product per step (``baddbmm`` over a leading direction axis);
* sequences are sorted by length so that at step ``t`` only the prefix of the batch
  that is still running is computed — the same work a packed sequence does, without
  its per-step bookkeeping.

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


def _reverse_index(lengths: Tensor, steps: int) -> Tensor:
    """idx[b, t] = L_b − 1 − t for t < L_b, else t: reverses each sequence inside its length."""
    t = torch.arange(steps, device=lengths.device).unsqueeze(0)  # [1, T]
    lens = lengths.unsqueeze(1)  # [B, 1]
    return torch.where(t < lens, lens - 1 - t, t)  # [B, T]


class GRURecurrence(torch.autograd.Function):
    """The recurrent part of a GRU for both directions at once, with a hand-written backward.

    Inputs: ``gi`` [S, 2, B, 3H] input gates (x·W_ihᵀ + b_ih) per step, direction, sequence
    (sequences sorted by length, the backward direction already reversed within its
    length); ``w_hh_t`` [2, H, 3H]; ``b_hh`` [2, 1, 3H]; ``active`` = running sequences per
    step (a batch prefix). Output: hidden states [S, 2, B, H], zero past each length.

    Autograd over a Python loop records ~10 nodes per step and materialises a zero
    gradient for every slice; here the backward is one loop of fused in-place updates
    and the weight gradient is a single large matrix product after the loop.
    """

    @staticmethod
    def forward(ctx, gi: Tensor, w_hh_t: Tensor, b_hh: Tensor, active: tuple[int, ...]) -> Tensor:
        S, _, B, G = gi.shape
        H = G // 3
        hs = gi.new_zeros(S, 2, B, H)  # h_t
        gates = gi.new_zeros(S, 2, B, 4 * H)  # r, z, n, gh_n per step (for backward)
        h = gi.new_zeros(2, B, H)
        for t in range(S):
            n_act = active[t]
            hp = h[:, :n_act]
            gh = torch.baddbmm(b_hh, hp, w_hh_t)  # [2, n, 3H]
            gi_t = gi[t, :, :n_act]
            rz = (gh[..., : 2 * H] + gi_t[..., : 2 * H]).sigmoid()
            r, z = rz[..., :H], rz[..., H:]
            n = (gi_t[..., 2 * H:] + gh[..., 2 * H:] * r).tanh()
            h_new = (hp - n) * z + n
            hs[t, :, :n_act] = h_new
            g = gates[t, :, :n_act]
            g[..., : 2 * H] = rz
            g[..., 2 * H: 3 * H] = n
            g[..., 3 * H:] = gh[..., 2 * H:]
            h = hs[t]
        ctx.active = active
        ctx.save_for_backward(hs, gates, w_hh_t)
        return hs

    @staticmethod
    def backward(ctx, grad_hs: Tensor):
        hs, gates, w_hh_t = ctx.saved_tensors
        active = ctx.active
        S, _, B, H = hs.shape
        grad_gh = hs.new_zeros(S, 2, B, 3 * H)  # d(h·W_hhᵀ + b_hh) per step
        grad_gi = hs.new_zeros(S, 2, B, 3 * H)
        w_hh = w_hh_t.transpose(1, 2)  # [2, 3H, H]
        dh = hs.new_zeros(2, B, H)
        zeros = hs.new_zeros(2, B, H)
        for t in range(S - 1, -1, -1):
            n_act = active[t]
            dh_t = dh[:, :n_act] + grad_hs[t, :, :n_act]
            hp = (hs[t - 1] if t > 0 else zeros)[:, :n_act]
            g = gates[t, :, :n_act]
            r, z, n, ghn = g[..., :H], g[..., H: 2 * H], g[..., 2 * H: 3 * H], g[..., 3 * H:]
            d_an = dh_t * (1 - z) * (1 - n * n)  # through h = (hp − n)·z + n and n = tanh(a_n)
            gi_g = grad_gi[t, :, :n_act]
            gi_g[..., :H] = d_an * ghn * r * (1 - r)  # a_r
            gi_g[..., H: 2 * H] = dh_t * (hp - n) * z * (1 - z)  # a_z
            gi_g[..., 2 * H:] = d_an
            gh_g = grad_gh[t, :, :n_act]
            gh_g[..., : 2 * H] = gi_g[..., : 2 * H]
            gh_g[..., 2 * H:] = d_an * r
            dh[:, :n_act] = torch.baddbmm(dh_t * z, gh_g, w_hh)  # [2, n, H]
        h_prev = torch.cat([zeros.unsqueeze(0), hs[:-1]], 0)  # [S, 2, B, H]
        grad_w = torch.einsum("sdbh,sdbg->dhg", h_prev, grad_gh)  # [2, H, 3H]
        grad_b = grad_gh.sum((0, 2)).unsqueeze(1)  # [2, 1, 3H]
        return grad_gi, grad_w, grad_b, None


def fused_bigru(gru: nn.GRU, x: Tensor, lengths: Tensor) -> Tensor:
    """Fast path with the outputs of :func:`packed_bigru` (see module docstring).

    Uses ``gru``'s parameters (``weight_ih_l0`` …, ``*_reverse``) so both paths share
    one set of weights and one state-dict layout.
    """
    if gru.num_layers != 1 or not gru.bidirectional or not gru.batch_first:
        raise ValueError("fused_bigru supports single-layer, bidirectional, batch_first GRUs only")
    B, T, _ = x.shape
    H = gru.hidden_size
    lengths = lengths.to(torch.long).cpu()
    if B == 0:
        return x.new_zeros(B, T, 2 * H)
    if int(lengths.min()) < 1:
        raise ValueError("every sequence needs at least one valid step")
    order = torch.argsort(lengths, descending=True, stable=True)
    sorted_lengths = lengths[order]
    steps = int(sorted_lengths[0])
    # active[t] = number of sequences still running at step t (a prefix after sorting)
    active = (sorted_lengths.unsqueeze(0) > torch.arange(steps).unsqueeze(1)).sum(1).tolist()

    order_dev = order.to(x.device)
    xs = x.index_select(0, order_dev)[:, :steps]  # [B, S, Din]
    w_ih = torch.cat([gru.weight_ih_l0, gru.weight_ih_l0_reverse], 0)  # [6H, Din]
    b_ih = torch.cat([gru.bias_ih_l0, gru.bias_ih_l0_reverse], 0)  # [6H]
    valid = torch.arange(steps).unsqueeze(0) < sorted_lengths.unsqueeze(1)  # [B, S]
    if bool(valid.all()):
        gi = torch.addmm(b_ih, xs.reshape(B * steps, -1), w_ih.t())  # [B·S, 6H]
    else:  # project only the valid steps, as a packed sequence does; padding rows are never read
        rows = valid.reshape(-1).nonzero().squeeze(1).to(x.device)
        gi_valid = torch.addmm(b_ih, xs.reshape(B * steps, -1).index_select(0, rows), w_ih.t())  # [N, 6H]
        gi = gi_valid.new_zeros(B * steps, 6 * H).index_copy(0, rows, gi_valid)
    gi = gi.view(B, steps, 2, 3 * H)
    rev = _reverse_index(sorted_lengths, steps).to(x.device)  # [B, S]
    gi_fwd = gi[:, :, 0]  # [B, S, 3H]
    gi_bwd = gi[:, :, 1].gather(1, rev.unsqueeze(2).expand(B, steps, 3 * H))  # reversed in-length
    gi_steps = torch.stack([gi_fwd, gi_bwd], 0).permute(2, 0, 1, 3).contiguous()  # [S, 2, B, 3H]

    w_hh_t = torch.stack([gru.weight_hh_l0.t(), gru.weight_hh_l0_reverse.t()], 0)  # [2, H, 3H]
    b_hh = torch.stack([gru.bias_hh_l0, gru.bias_hh_l0_reverse], 0).unsqueeze(1)  # [2, 1, 3H]
    out = GRURecurrence.apply(gi_steps, w_hh_t, b_hh, tuple(active))  # [S, 2, B, H], zeros where ended
    out_fwd = out[:, 0].transpose(0, 1)  # [B, S, H]
    out_bwd = out[:, 1].transpose(0, 1).gather(1, rev.unsqueeze(2).expand(B, steps, H))
    both = torch.cat([out_fwd, out_bwd], 2)  # [B, S, 2H] in sorted order
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(B)
    both = both.index_select(0, inverse.to(x.device))
    if steps < T:
        both = nn.functional.pad(both, (0, 0, 0, T - steps))
    return both  # [B, T, 2H]
