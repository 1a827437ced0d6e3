"""An independent, plain transcription of the seed LFVMR's eval-mode forward pass (SPEC §4),
in float64 with explicit loops: no zeroground module, no nn.GRU / nn.MultiheadAttention. The
tests compare zeroground's network against it on queries the oracle never saw."""

from __future__ import annotations

import math

import torch


def _sinusoid(positions: int, dim: int) -> torch.Tensor:
    pe = torch.zeros(positions, dim, dtype=torch.float64)
    for p in range(positions):
        for i in range(0, dim, 2):
            angle = p / (10000.0 ** (i / dim))
            pe[p, i] = math.sin(angle)
            pe[p, i + 1] = math.cos(angle)
    return pe


def _gru_direction(x: torch.Tensor, w_ih, w_hh, b_ih, b_hh) -> torch.Tensor:
    """x [T, D] → [T, H], PyTorch's GRU equations (gate rows r, z, n)."""
    H = w_hh.shape[1]
    h = torch.zeros(H, dtype=torch.float64)
    out = []
    for t in range(x.shape[0]):
        gi = w_ih @ x[t] + b_ih
        gh = w_hh @ h + b_hh
        r = torch.sigmoid(gi[:H] + gh[:H])
        z = torch.sigmoid(gi[H:2 * H] + gh[H:2 * H])
        n = torch.tanh(gi[2 * H:] + r * gh[2 * H:])
        h = (1 - z) * n + z * h
        out.append(h)
    return torch.stack(out)


def _mha(q_in, kv_in, w, b, w_out, b_out, heads: int, key_valid=None):
    """q_in [S, D], kv_in [K, D] → [S, D]."""
    D = q_in.shape[1]
    q, k, v = q_in @ w[:D].T + b[:D], kv_in @ w[D:2 * D].T + b[D:2 * D], kv_in @ w[2 * D:].T + b[2 * D:]
    hd = D // heads
    outs = []
    for h in range(heads):
        sl = slice(h * hd, (h + 1) * hd)
        scores = q[:, sl] @ k[:, sl].T / math.sqrt(hd)
        if key_valid is not None:
            scores = scores.masked_fill(~key_valid[None, :], float("-inf"))
        outs.append(torch.softmax(scores, dim=1) @ v[:, sl])
    return torch.cat(outs, 1) @ w_out.T + b_out


def plain_forward(state: dict, feats, n_valid: int, text, heads: int = 4):
    """One item: feats [128, Dv] (zero-padded), n_valid, text [Dc] → (timestamps [2], weights [128])."""
    sd = {k: v.double() for k, v in state.items()}
    x = torch.as_tensor(feats, dtype=torch.float64)
    S, Dv = x.shape
    x = x + _sinusoid(S, Dv)  # padding rows too, as the reference
    valid = x[:n_valid]
    fwd = _gru_direction(valid, sd["video_encoder.gru.weight_ih_l0"], sd["video_encoder.gru.weight_hh_l0"],
                         sd["video_encoder.gru.bias_ih_l0"], sd["video_encoder.gru.bias_hh_l0"])
    bwd = _gru_direction(valid.flip(0), sd["video_encoder.gru.weight_ih_l0_reverse"],
                         sd["video_encoder.gru.weight_hh_l0_reverse"], sd["video_encoder.gru.bias_ih_l0_reverse"],
                         sd["video_encoder.gru.bias_hh_l0_reverse"]).flip(0)
    states = torch.zeros(S, fwd.shape[1] * 2, dtype=torch.float64)
    states[:n_valid] = torch.cat([fwd, bwd], 1)
    agg = torch.relu(torch.cat([x, states], 1) @ sd["video_encoder.feature_aggregation.0.weight"].T
                     + sd["video_encoder.feature_aggregation.0.bias"])
    v = agg @ sd["video_mlp.weight"].T + sd["video_mlp.bias"]
    t = torch.as_tensor(text, dtype=torch.float64)
    t = t / t.norm()
    lang = (t @ sd["text_mlp.weight"].T + sd["text_mlp.bias"])[None, :].expand(S, -1)
    for i in (1, 2, 3):
        p = f"crossattn.mha{i}."
        v = v + _mha(v, lang, sd[p + "in_proj_weight"], sd[p + "in_proj_bias"], sd[p + "out_proj.weight"],
                     sd[p + "out_proj.bias"], heads)
    key_valid = torch.arange(S) < n_valid
    for i in (1, 2):
        p = f"selfattn.mha{i}."
        v = v + _mha(v, v, sd[p + "in_proj_weight"], sd[p + "in_proj_bias"], sd[p + "out_proj.weight"],
                     sd[p + "out_proj.bias"], heads, key_valid)
    alpha = (v @ sd["loc_regressor_two_stage.tatt_vid.to_alpha.weight"].T).squeeze(1)
    alpha = alpha.masked_fill(~key_valid, -1e9)
    w = torch.softmax(alpha, 0)
    pooled = w @ v
    h = torch.relu(pooled @ sd["loc_regressor_two_stage.MLP_reg.0.weight"].T + sd["loc_regressor_two_stage.MLP_reg.0.bias"])
    ts = torch.relu(h @ sd["loc_regressor_two_stage.MLP_reg.2.weight"].T + sd["loc_regressor_two_stage.MLP_reg.2.bias"])
    return ts, w
