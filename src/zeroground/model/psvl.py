"""The PSVL grounding model ("cross-modality two-stage attention", SPEC.md §3).

One readable file: the parts (the config dataclass is in ``config.py``), and ``GroundingModel`` whose
forward pass reads top to bottom. Parameter names equal the released PSVL
checkpoint's (``shared/psvl/oracle/state_dict_keys.txt``), so its state dict loads
with ``strict=True``.

The query side is pluggable (``QUERY_ENCODERS``): "tokens" is PSVL's word-id GRU,
"clip" (``clip_query.py``) maps CLIP-space vectors to a short query sequence (LFVMR).
Everything after the query encoder is shared.

``impl`` (``GroundingModel(cfg, impl=...)``, ``build_model``, ``load_model_dir``) picks between two
implementations of the same maths:
"reference" mirrors the PSVL code (packed GRUs, ``nn.MultiheadAttention`` with its
attention weights, a Python loop over non-local heads); "fast" (default) computes the
same function with fewer, larger operations (see ``gru.py`` and the ``_fast``
methods). Both load the same weights; the oracle tests and the benchmark check that
they agree.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zeroground.model.cross_rank_bn import CrossRankBatchNorm
from zeroground.model.clip_query import ClipQueryEncoder
from zeroground.model.config import (  # noqa: F401 - re-exported
    ModelConfig,
    ModelConfigError,
    ModelInputError,
    QueryBatch,
    Readout,
    check_impl,
)
from zeroground.model.gru import fused_bigru, packed_bigru

NEG_INF = -1e9  # the reference's fill value for masked scores


def aggregation_block(in_dim: int, out_dim: int, dropout: float) -> nn.Sequential:
    """PSVL's "Linear → ReLU → Dropout" that brings each modality to the fusion width."""
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Dropout(dropout))


def _bigru(gru: nn.GRU, x: Tensor, lengths: Tensor, impl: str) -> Tensor:
    # On GPUs cuDNN's packed GRU is faster than the fused CPU path: use it whatever impl says.
    if impl == "reference" or x.is_cuda:
        return packed_bigru(gru, x, lengths)
    return fused_bigru(gru, x, lengths)


class TokenQueryEncoder(nn.Module):
    """PSVL's query encoder: word ids → embedding → BiGRU (packed) → aggregation."""

    def __init__(self, cfg: ModelConfig, impl: str = "fast"):
        super().__init__()
        self.impl = impl
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
        self.gru = nn.GRU(cfg.embed_dim, cfg.query_gru_hidden, num_layers=1, batch_first=True, bidirectional=True)
        self.feature_aggregation = aggregation_block(2 * cfg.query_gru_hidden, cfg.hidden, cfg.dropout)

    def forward(self, query: "QueryBatch") -> tuple[Tensor, Tensor]:
        if query.ids is None:
            raise ModelInputError("the 'tokens' query encoder needs word ids (QueryBatch.ids)")
        ids = query.ids  # [B, L]
        mask = ids > 0  # [B, L]
        # an empty query would crash the packed GRU; give it one (padding) step — its
        # mask stays all-False, and preprocessing already refuses empty queries.
        lengths = mask.sum(1).clamp(min=1)
        words = _bigru(self.gru, self.embedding(ids), lengths, self.impl)  # [B, L, 2H]
        return self.feature_aggregation(words), mask  # [B, L, hidden], [B, L]


class VideoEncoder(nn.Module):
    """BiGRU over the valid segments; raw features ‖ GRU states → aggregation block."""

    def __init__(self, cfg: ModelConfig, impl: str = "fast"):
        super().__init__()
        self.impl = impl
        self.video_dim = cfg.video_dim
        self.gru = nn.GRU(cfg.video_dim, cfg.video_gru_hidden, num_layers=1, batch_first=True, bidirectional=True)
        self.feature_aggregation = aggregation_block(cfg.video_dim + 2 * cfg.video_gru_hidden, cfg.hidden, cfg.dropout)

    def forward(self, feats: Tensor, mask: Tensor) -> Tensor:
        lengths = mask.sum(1).clamp(min=1)  # [B]
        states = _bigru(self.gru, feats, lengths, self.impl)  # [B, S, 2H]
        if self.impl == "reference":
            return self.feature_aggregation(torch.cat([feats, states], dim=2))  # [B, S, hidden]
        # Same linear map split in two, so that backward never forms the (unused)
        # gradient with respect to the raw input features.
        linear, relu, drop = self.feature_aggregation
        w_feat, w_state = linear.weight[:, : self.video_dim], linear.weight[:, self.video_dim :]
        out = torch.addmm(linear.bias, feats.reshape(-1, feats.shape[2]), w_feat.t())
        out = torch.addmm(out, states.reshape(-1, states.shape[2]), w_state.t())
        return drop(relu(out.view(feats.shape[0], feats.shape[1], -1)))  # [B, S, hidden]


class ConvBNReLU(nn.Module):
    """Conv1d(k) → BatchNorm1d → ReLU along time, on [B, L, D] features."""

    def __init__(self, cfg: ModelConfig, impl: str = "fast"):
        super().__init__()
        self.impl = impl
        d = cfg.hidden
        self.module = nn.Sequential(
            nn.Conv1d(d, d, kernel_size=cfg.conv_kernel, padding=cfg.conv_kernel // 2),
            nn.BatchNorm1d(d),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        """x [B, L, D] → [B, L, D]."""
        if self.impl == "reference":
            return self.module(x.transpose(1, 2)).transpose(1, 2)
        # [B, L, D] seen as [B, D, 1, L] *is* the channels-last layout of a 2-D image, so a
        # 1×k conv2d runs on it without the two transposing copies and with faster
        # kernels (forward and backward) than Conv1d on the transposed tensor.
        conv, bn, _relu = self.module
        y = F.conv2d(x.transpose(1, 2).unsqueeze(2), conv.weight.unsqueeze(2), conv.bias,
                     padding=(0, conv.padding[0]))  # [B, D, 1, L], channels-last
        if isinstance(bn, CrossRankBatchNorm):  # DDP training: statistics over all ranks
            return F.relu(bn(y)).squeeze(2).transpose(1, 2)
        momentum = bn.momentum
        if self.training and bn.track_running_stats:  # what nn.BatchNorm1d does
            bn.num_batches_tracked.add_(1)
            if momentum is None:
                momentum = 1.0 / float(bn.num_batches_tracked)
        y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                         self.training or bn.running_mean is None, momentum or 0.0, bn.eps)
        return F.relu(y).squeeze(2).transpose(1, 2)  # [B, L, D], contiguous


class AttentionBlock(nn.Module):
    """Cross-attention (target attends to source) → ConvBNReLU, plus residual to target."""

    def __init__(self, cfg: ModelConfig, impl: str = "fast"):
        super().__init__()
        self.impl = impl
        self.heads = cfg.fusion_heads
        self.attention = nn.MultiheadAttention(cfg.hidden, cfg.fusion_heads)
        self.convbnrelu = ConvBNReLU(cfg, impl)

    def forward(self, target: Tensor, source: Tensor, source_mask: Tensor) -> Tensor:
        """target [B, Lt, D], source [B, Ls, D], source_mask [B, Ls] (True = valid)."""
        if self.impl == "reference":
            attended, _ = self.attention(
                target.transpose(0, 1), source.transpose(0, 1), source.transpose(0, 1),
                key_padding_mask=~source_mask,
            )
            attended = attended.transpose(0, 1)
        else:
            attended = self._attend_fast(target, source, source_mask)
        return self.convbnrelu(attended) + target  # [B, Lt, D]

    def _attend_fast(self, target: Tensor, source: Tensor, source_mask: Tensor) -> Tensor:
        """``nn.MultiheadAttention`` without forming averaged weights, batch-first."""
        B, Lt, D = target.shape
        Ls = source.shape[1]
        h, d = self.heads, D // self.heads
        w, b = self.attention.in_proj_weight, self.attention.in_proj_bias
        q = F.linear(target, w[:D], b[:D])  # [B, Lt, D]
        kv = F.linear(source, w[D:], b[D:])  # [B, Ls, 2D]
        k, v = kv[..., :D], kv[..., D:]
        q = q.view(B, Lt, h, d).transpose(1, 2)  # [B, h, Lt, d]
        k = k.view(B, Ls, h, d).transpose(1, 2)
        v = v.view(B, Ls, h, d).transpose(1, 2)
        # fused attention kernel; a boolean mask = the -inf fill of nn.MultiheadAttention
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=source_mask[:, None, None, :],
                                             scale=1.0 / math.sqrt(d))  # [B, h, Lt, d]
        out = out.transpose(1, 2).reshape(B, Lt, D)
        return self.attention.out_proj(out)


class FusionModule(nn.Module):
    """A stack of attention blocks; the source side stays fixed through the stack."""

    def __init__(self, cfg: ModelConfig, impl: str = "fast"):
        super().__init__()
        self.layers = nn.ModuleList(AttentionBlock(cfg, impl) for _ in range(cfg.fusion_layers))

    def forward(self, target: Tensor, source: Tensor, source_mask: Tensor) -> Tensor:
        for layer in self.layers:
            target = layer(target, source, source_mask)
        return target


class NonLocalBlock(nn.Module):
    """Multi-head self-attention over segments with a residual (PSVL/LGI non-local block)."""

    def __init__(self, cfg: ModelConfig, impl: str = "fast"):
        super().__init__()
        self.impl = impl
        self.dim = cfg.hidden
        self.heads = cfg.nonlocal_heads
        self.c_lin = nn.Linear(cfg.hidden, 2 * cfg.hidden)
        self.v_lin = nn.Linear(cfg.hidden, cfg.hidden)
        self.drop = nn.Dropout(cfg.nonlocal_dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x [B, S, D], mask [B, S] (True = valid segment)."""
        m_k = self.v_lin(self.drop(x))  # [B, S, D]
        m_q, m_v = self.c_lin(self.drop(x)).split(self.dim, dim=2)  # [B, S, D] each
        scale = (self.dim // self.heads) ** 0.5
        invalid = ~mask.unsqueeze(1)  # [B, 1, S]: masks the last axis
        if self.impl == "reference":
            parts = []
            for k, q, v in zip(m_k.split(self.dim // self.heads, 2), m_q.split(self.dim // self.heads, 2),
                               m_v.split(self.dim // self.heads, 2)):
                w = (k @ q.transpose(1, 2) / scale).masked_fill(invalid, NEG_INF).softmax(2)  # [B, S, S]
                parts.append(w @ v)
            return x + torch.cat(parts, 2)
        B, S, D = x.shape
        h, d = self.heads, D // self.heads
        k = m_k.view(B, S, h, d).transpose(1, 2)  # [B, h, S, d]
        q = m_q.reshape(B, S, h, d).transpose(1, 2)
        v = m_v.reshape(B, S, h, d).transpose(1, 2)
        # softmax(k·qᵀ/√d) over the last axis with invalid segments masked: a fused attention
        # kernel with k as its queries. Masking with -inf instead of -1e9 gives the same
        # weights (exp underflows to 0 either way) as long as a video has a valid segment.
        out = F.scaled_dot_product_attention(k, q, v, attn_mask=mask[:, None, None, :], scale=1.0 / scale)
        return x + out.transpose(1, 2).reshape(B, S, D)  # [B, S, D]


class AttentivePooling(nn.Module):
    """Softmax attention over positions → weighted sum → Linear (``fc``)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.feat2att = nn.Linear(cfg.hidden, cfg.hidden // 2, bias=False)
        self.to_alpha = nn.Linear(cfg.hidden // 2, 1, bias=False)
        self.fc = nn.Linear(cfg.hidden, cfg.hidden)

    def forward(self, feats: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        alpha = self.to_alpha(torch.tanh(self.feat2att(feats)))  # [B, S, 1]
        alpha = alpha.masked_fill(~mask.unsqueeze(2), NEG_INF)
        weights = alpha.transpose(1, 2).softmax(2)  # [B, 1, S]
        pooled = (weights @ feats).squeeze(1)  # [B, D]
        return self.fc(pooled), weights.squeeze(1)


class TwoStageRegressor(nn.Module):
    """The head used for predictions: attentive pooling → MLP → ReLU'd (start, end)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.tatt_vid = AttentivePooling(cfg)
        self.MLP_reg = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 2), nn.ReLU())

    def forward(self, feats: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        pooled, weights = self.tatt_vid(feats, mask)
        return self.MLP_reg(pooled), weights  # [B, 2], [B, S]


class UnusedRegressor(nn.Module):
    """PSVL's first-stage head: in the released checkpoint, never called. Kept so the file loads strictly."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.tatt_vid = AttentivePooling(cfg)
        self.tatt_query = AttentivePooling(cfg)
        self.MLP_reg = nn.Sequential(nn.Linear(2 * cfg.hidden, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 2))


def as_query_batch(query: "QueryBatch | Tensor") -> QueryBatch:
    """Accept a bare tensor: integer → word ids, floating → CLIP vectors."""
    if isinstance(query, QueryBatch):
        return query
    if torch.is_floating_point(query):
        return QueryBatch(vectors=query)
    return QueryBatch(ids=query)


QUERY_ENCODERS: dict[str, type[nn.Module]] = {"tokens": TokenQueryEncoder, "clip": ClipQueryEncoder}


class GroundingModel(nn.Module):
    """Video features + a query → normalised (start, end) and temporal attention weights.

    ``readout`` (a :class:`Readout`; PSVL's regression by default) decides the ``spans``
    output: ``load_model_dir`` sets it from the model directory, the trainer from its config."""

    def __init__(self, cfg: ModelConfig, impl: str = "fast"):
        super().__init__()
        if cfg.query_encoder not in QUERY_ENCODERS:
            raise ModelConfigError(f"unknown query_encoder {cfg.query_encoder!r}; choose one of {sorted(QUERY_ENCODERS)}")
        self.cfg = cfg
        self.impl = check_impl(impl)
        self.readout = Readout()
        self.query_encoder = QUERY_ENCODERS[cfg.query_encoder](cfg, impl)
        self.video_encoder = VideoEncoder(cfg, impl)
        self.v_fusor = FusionModule(cfg, impl)  # segments attend to words
        self.s_fusor = FusionModule(cfg, impl)  # words attend to segments
        self.cv_fusor = FusionModule(cfg, impl)  # fused segments attend to fused words
        self.non_locals_layer = nn.ModuleList(NonLocalBlock(cfg, impl) for _ in range(cfg.nonlocal_layers))
        self.loc_regressor = UnusedRegressor(cfg)
        self.loc_regressor_two_stage = TwoStageRegressor(cfg)

    def forward(self, video_feats: Tensor, video_mask: Tensor, query: "QueryBatch | Tensor") -> dict[str, Tensor]:
        """video_feats [B, S, Dv], video_mask [B, S] (nonzero = valid), query → dict of
        ``timestamps`` [B, 2] (normalised, ReLU'd, unclamped), ``attention_weights`` [B, S] and
        ``spans`` [B, 2] (under ``self.readout``)."""
        video_mask = video_mask.reshape(video_mask.shape[0], -1).bool()  # accepts [B, S, 1] too
        q, q_mask = self.query_encoder(as_query_batch(query))  # query first, as the reference (dropout order)
        return self._fuse(q, q_mask, self.encode_video(video_feats, video_mask), video_mask)

    def encode_video(self, video_feats: Tensor, video_mask: Tensor) -> Tensor:
        """The query-independent part: [B, S, Dv] → v [B, S, D]. Encode a video once, ask many queries."""
        if video_feats.shape[-1] != self.cfg.video_dim:
            raise ModelInputError(
                f"video features have dimension {video_feats.shape[-1]}, the model expects {self.cfg.video_dim}"
            )
        return self.video_encoder(video_feats, video_mask.reshape(video_mask.shape[0], -1).bool())

    def ground(self, v: Tensor, video_mask: Tensor, query: "QueryBatch | Tensor") -> dict[str, Tensor]:
        """Fusion, non-local blocks and head on an encoded video ``v`` [B, S, D]."""
        q, q_mask = self.query_encoder(as_query_batch(query))  # [B, L, D], [B, L]
        return self._fuse(q, q_mask, v, video_mask.reshape(video_mask.shape[0], -1).bool())

    def _fuse(self, q: Tensor, q_mask: Tensor, v: Tensor, video_mask: Tensor) -> dict[str, Tensor]:
        q_fused = self.s_fusor(q, v, video_mask)  # [B, L, D]: words attend to the unfused video
        v_fused = self.v_fusor(v, q, q_mask)  # [B, S, D]: segments attend to the unfused words
        v_two_stage = self.cv_fusor(v_fused, q_fused, q_mask)  # [B, S, D]
        for block in self.non_locals_layer:
            v_two_stage = block(v_two_stage, video_mask)
        timestamps, weights = self.loc_regressor_two_stage(v_two_stage, video_mask)
        return {"timestamps": timestamps, "attention_weights": weights,
                "spans": read_out_spans(self.readout, timestamps, weights, video_mask)}


def read_out_spans(readout: Readout, timestamps: Tensor, weights: Tensor, video_mask: Tensor) -> Tensor:
    """The ``spans`` output under ``readout``: the regression head's ``timestamps`` [B, 2], or
    :func:`attention_spans` of the attention ``weights`` [B, S]."""
    if readout.span == "attention":
        return attention_spans(weights, video_mask, readout.attention_ratio)
    return timestamps


@torch.no_grad()
def attention_spans(weights: Tensor, video_mask: Tensor, ratio: float = 1 / 3) -> Tensor:
    """Read a span out of temporal attention: the run of consecutive valid segments around
    the peak whose weight stays >= ``ratio`` x the peak → [B, 2] (start, end) normalised to
    the valid length n (segment i covers [i/n, (i+1)/n)).

    Why it works: the guidance loss trains the attention to cover the moment, and on small
    training budgets it localises better than the regression head. One knob, ``ratio``.
    weights [B, S], video_mask [B, S] (True = valid; valid segments come first).
    """
    mask = video_mask.reshape(video_mask.shape[0], -1).bool()
    w = weights.masked_fill(~mask, float("-inf"))
    S = w.shape[1]
    idx = torch.arange(S, device=w.device).expand_as(w)  # [B, S]
    peak = w.argmax(1, keepdim=True)  # [B, 1]
    below = ~(w >= ratio * w.gather(1, peak))  # invalid segments count as below
    start = torch.where(below & (idx < peak), idx, -1).amax(1) + 1  # [B]
    end = torch.where(below & (idx > peak), idx, S).amin(1)  # [B], exclusive
    n = mask.sum(1).clamp(min=1).to(weights.dtype)
    return torch.stack([start.to(weights.dtype) / n, end.to(weights.dtype) / n], 1)  # [B, 2]


def grounding_loss(outputs: dict[str, Tensor], start: Tensor, end: Tensor, guidance: Tensor,
                   localization_weight: float = 1.0) -> dict[str, Tensor]:
    """SPEC §4: SmoothL1(start) + SmoothL1(end) + temporal attention guidance.

    start/end [B] normalised targets; guidance [B, S] 0/1 mask of the GT segments.
    ``localization_weight`` multiplies the SmoothL1 term in ``loss`` (1 = the reference);
    ``localization_loss`` is reported unweighted.
    """
    ts = outputs["timestamps"]
    localization = F.smooth_l1_loss(ts[:, 0], start) + F.smooth_l1_loss(ts[:, 1], end)
    w = outputs["attention_weights"]
    attention = ((-guidance * torch.log(w + 1e-8)).sum(1) / guidance.sum(1)).mean(0)
    return {"localization_loss": localization, "attention_loss": attention,
            "loss": localization_weight * localization + attention}
