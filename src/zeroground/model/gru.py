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
    gi = torch.addmm(b_ih, xs.reshape(B * steps, -1), w_ih.t()).view(B, steps, 2, 3 * H)
    rev = _reverse_index(sorted_lengths, steps).to(x.device)  # [B, S]
    gi_fwd = gi[:, :, 0]  # [B, S, 3H]
    gi_bwd = gi[:, :, 1].gather(1, rev.unsqueeze(2).expand(B, steps, 3 * H))  # reversed in-length
    # unbind (not indexing) so that backward stacks the step gradients once instead of
    # scattering each into a zero tensor of the full size
    gi_steps = torch.stack([gi_fwd, gi_bwd], 0).permute(2, 0, 1, 3).unbind(0)  # S × [2, B, 3H]

    w_hh_t = torch.stack([gru.weight_hh_l0.t(), gru.weight_hh_l0_reverse.t()], 0)  # [2, H, 3H]
    b_hh = torch.stack([gru.bias_hh_l0, gru.bias_hh_l0_reverse], 0).unsqueeze(1)  # [2, 1, 3H]

    h = x.new_zeros(2, B, H)  # [2, B, H]
    outs = []
    for t in range(steps):
        n_act = active[t]
        h = h[:, :n_act]
        gh = torch.baddbmm(b_hh, h, w_hh_t)  # [2, n, 3H]
        gi_t = gi_steps[t][:, :n_act]  # [2, n, 3H]
        rz = (gh[..., : 2 * H] + gi_t[..., : 2 * H]).sigmoid()
        r, z = rz[..., :H], rz[..., H:]
        n = (gi_t[..., 2 * H :] + gh[..., 2 * H :] * r).tanh()
        h = (h - n) * z + n  # [2, n, H]
        outs.append(nn.functional.pad(h, (0, 0, 0, B - n_act)) if n_act < B else h)
    out = torch.stack(outs, 0)  # [S, 2, B, H], zeros where a sequence had ended
    out_fwd = out[:, 0].transpose(0, 1)  # [B, S, H]
    out_bwd = out[:, 1].transpose(0, 1).gather(1, rev.unsqueeze(2).expand(B, steps, H))
    both = torch.cat([out_fwd, out_bwd], 2)  # [B, S, 2H] in sorted order
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(B)
    both = both.index_select(0, inverse.to(x.device))
    if steps < T:
        both = nn.functional.pad(both, (0, 0, 0, T - steps))
    return both  # [B, T, 2H]
