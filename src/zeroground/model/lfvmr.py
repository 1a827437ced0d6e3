"""The seed's LFVMR network (aniki-ly/Language-free-Video-Moment-Retrieval, ``SimpleModel`` of
``models/simple_model_cross_modal_two_stage.py``) and its ATP frame selector, weight-compatible.

State-dict names and shapes are those of the reference (``../shared/lfvmr/oracle/
state_dict_keys.txt``), so its checkpoints load with ``strict=True``. The sizes come from
:class:`LFVMRConfig`, whose defaults are the reference's; unlike the reference (which
hard-codes a 1024-d positional encoding) the encoding follows ``video_dim``, so the same
network runs on 512-d CLIP or the demo's 64-d features.

What is shared with PSVL's network (``zeroground.model.psvl``): the video encoder (bidirectional
GRU on the valid segments, raw ‖ GRU states → Linear → ReLU → Dropout, with the fast fused
GRU) and the loss (``grounding_loss``). The differences are the reference's (SPEC §4):
sinusoidal positional encoding added to the raw features, a single CLIP-space query vector,
three cross-attention and two self-attention layers with residuals, attentive pooling straight
on the fused features, and a two-stage regressor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zeroground.model.config import LFVMRConfig, ModelInputError, QueryBatch, Readout, check_impl  # noqa: F401 - LFVMRConfig re-exported
from zeroground.model.psvl import NEG_INF, VideoEncoder, as_query_batch, read_out_spans


class PositionalEncoding(nn.Module):
    """Sinusoidal table ``pe`` [P, 1, D]: pe[p, 2i] = sin(p·10000^(−2i/D)), pe[p, 2i+1] = cos(·)."""

    def __init__(self, dim: int, positions: int):
        super().__init__()
        position = torch.arange(positions, dtype=torch.float32).unsqueeze(1)  # [P, 1]
        div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))  # [D/2]
        pe = torch.zeros(positions, dim)
        pe[:, 0::2] = torch.sin(position * div)
        pe[:, 1::2] = torch.cos(position * div)
        self.register_buffer("pe", pe.unsqueeze(1))  # [P, 1, D]

    def forward(self, x: Tensor) -> Tensor:
        """x [B, S, D] → x + pe[:S] (padding rows included, as the reference)."""
        return x + self.pe[: x.shape[1], 0].unsqueeze(0)


class _Attentions(nn.Module):
    """``mha1 … mhaN`` (the reference's attribute names), each with a residual around it."""

    def __init__(self, dim: int, heads: int, layers: int):
        super().__init__()
        for i in range(layers):
            self.add_module(f"mha{i + 1}", nn.MultiheadAttention(dim, heads))
        self.layers = layers

    def constant_keys_output(self, lang: Tensor) -> Tensor:
        """What the layers add when every key and value is the same vector ``lang`` [B, D]
        (the seed's cross-attention, SPEC §4.5): the softmax over identical scores is uniform,
        so layer i adds out_proj(W_v·lang + b_v) whatever its queries -- [B, D] in total.
        Equal to running the attention up to float rounding (the fast path; the reference
        path runs it), without the [S, B, D] key/value projections of S copies of ``lang``."""
        total = lang.new_zeros(lang.shape)
        for i in range(self.layers):
            mha = getattr(self, f"mha{i + 1}")
            d = mha.embed_dim
            w_v, b_v = mha.in_proj_weight[2 * d:], mha.in_proj_bias[2 * d:]
            total = total + mha.out_proj(F.linear(lang, w_v, b_v))
        return total  # [B, D]

    def forward(self, v: Tensor, kv: Tensor | None = None, key_padding_mask: Tensor | None = None) -> Tensor:
        """v [S, B, D] time-major; kv [S, B, D] keys = values (None: self-attention)."""
        for i in range(self.layers):
            src = v if kv is None else kv
            out, _ = getattr(self, f"mha{i + 1}")(v, src, src, key_padding_mask=key_padding_mask, need_weights=False)
            v = v + out
        return v


class _Pooling(nn.Module):
    """Attentive pooling straight on the features (``feat2att`` is in the state dict, never used)."""

    def __init__(self, dim: int):
        super().__init__()
        self.feat2att = nn.Linear(dim, dim, bias=False)  # unused by the reference's forward (SPEC §4.7)
        self.to_alpha = nn.Linear(dim, 1, bias=False)

    def forward(self, feats: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        alpha = self.to_alpha(feats).squeeze(2).masked_fill(~mask, NEG_INF)  # [B, S]
        weights = alpha.softmax(1)  # [B, S]
        return torch.bmm(weights.unsqueeze(1), feats).squeeze(1), weights  # [B, D], [B, S]


class _TwoStageHead(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.tatt_vid = _Pooling(dim)
        self.MLP_reg = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 2), nn.ReLU())

    def forward(self, feats: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        pooled, weights = self.tatt_vid(feats, mask)
        return self.MLP_reg(pooled), weights  # [B, 2], [B, S]


class _ModalityEncoding(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.embedding = nn.Embedding(5, dim)  # ATP's table; row 3 = "visual", the only one used


class _ATPEncoder(nn.Module):
    def __init__(self, cfg: LFVMRConfig):
        super().__init__()
        self.modality_encoding = _ModalityEncoding(cfg.selector_dim)
        layer = nn.TransformerEncoderLayer(cfg.selector_dim, cfg.selector_heads, cfg.selector_ff,
                                           dropout=cfg.selector_dropout, activation="relu")
        # enable_nested_tensor off: the eval fast path would change rounding, not results
        self.transformer_encoder = nn.TransformerEncoder(layer, cfg.selector_layers, enable_nested_tensor=False)


VISUAL_MODALITY = 3


class ATPSelector(nn.Module):
    """ATP (Buch et al. 2022) over the candidate frames: one logit per candidate (SPEC §5)."""

    def __init__(self, cfg: LFVMRConfig):
        super().__init__()
        self.d_model = cfg.selector_dim
        self.embedding = nn.Linear(cfg.clip_dim, cfg.selector_dim)
        self.atp_encoder = _ATPEncoder(cfg)
        self.dropout = nn.Dropout(cfg.selector_dropout)
        self.logits = nn.Linear(cfg.selector_dim, 1)

    def forward(self, candidates: Tensor) -> Tensor:
        """candidates [B, K, Dc] → logits [B, K]."""
        x = self.embedding(candidates.transpose(0, 1)) * math.sqrt(self.d_model)  # [K, B, d]
        x = x + self.atp_encoder.modality_encoding.embedding.weight[VISUAL_MODALITY]
        x = self.atp_encoder.transformer_encoder(self.dropout(x))  # [K, B, d]
        return self.logits(x).squeeze(2).transpose(0, 1)  # [B, K]

    def select(self, candidates: Tensor) -> tuple[Tensor, Tensor]:
        """(selected vector [B, Dc], one-hot choice [B, K]).

        Training: hard Gumbel-softmax (τ = 1) with straight-through gradients, drawn by
        ``F.gumbel_softmax`` from torch's global RNG on the reference's time-major ``[K, B, 1]``
        logits, so the draws (and the oracle's train-mode choice) are the reference's;
        evaluation: the one-hot of the plain argmax.
        """
        logits = self(candidates)  # [B, K]
        if self.training:
            time_major = logits.t().unsqueeze(2).contiguous()  # [K, B, 1]: the layout the draws fill
            choice = F.gumbel_softmax(time_major, tau=1.0, hard=True, dim=0).squeeze(2).t()  # [B, K]
        else:
            choice = F.one_hot(logits.argmax(1), logits.shape[1]).to(logits.dtype)
        return torch.bmm(choice.unsqueeze(1), candidates).squeeze(1), choice  # [B, Dc], [B, K]


class LanguageFreeQueryEncoder(nn.Module):
    """Holds the selector (``query_encoder.selector.*`` in the state dict)."""

    def __init__(self, cfg: LFVMRConfig):
        super().__init__()
        self.selector = ATPSelector(cfg)


def add_gaussian_noise(candidates: Tensor, level: float, noise: Tensor | None = None,
                       generator: torch.Generator | None = None) -> Tensor:
    """The seed's ``add_noise``: unit rows + level·N(0, 1) per element, re-normalised (SPEC §5).

    ``noise`` (same shape) replaces the draw, e.g. to reproduce the oracle's ``torch.randn``.
    """
    x = F.normalize(candidates, dim=-1)
    if noise is None:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return F.normalize(x + level * noise, dim=-1)


class _VideoEncoderSizes:
    """The fields :class:`zeroground.model.psvl.VideoEncoder` reads, from an LFVMR config."""

    def __init__(self, cfg: LFVMRConfig):
        self.video_dim, self.video_gru_hidden = cfg.video_dim, cfg.video_gru_hidden
        self.hidden, self.dropout = cfg.hidden, cfg.dropout


class LFVMRModel(nn.Module):
    """The seed's grounding network: (video, one CLIP-space query vector) → span and attention.

    ``impl``: "fast" or "reference" (the seed's packed GRU and full cross-attention), the same
    maths; ``readout`` (as :class:`zeroground.model.psvl.GroundingModel`'s) decides ``spans``."""

    def __init__(self, cfg: LFVMRConfig, impl: str = "fast"):
        super().__init__()
        self.cfg = cfg
        self.impl = check_impl(impl)
        self.readout = Readout()  # the seed reads the regressor (the attention read-out is a demo diagnostic)
        self.query_encoder = LanguageFreeQueryEncoder(cfg)
        self.pos_embd = PositionalEncoding(cfg.video_dim, cfg.pe_positions)
        self.pe_dropout = nn.Dropout(cfg.pe_dropout)
        self.video_encoder = VideoEncoder(_VideoEncoderSizes(cfg), impl)
        self.video_mlp = nn.Linear(cfg.hidden, cfg.hidden)
        self.text_mlp = nn.Linear(cfg.clip_dim, cfg.hidden)
        self.crossattn = _Attentions(cfg.hidden, cfg.heads, cfg.cross_layers)
        self.selfattn = _Attentions(cfg.hidden, cfg.heads, cfg.self_layers)
        self.loc_regressor_two_stage = _TwoStageHead(cfg.hidden)

    def forward(self, video_feats: Tensor, video_mask: Tensor, query: "QueryBatch | Tensor") -> dict[str, Tensor]:
        """video_feats [B, S, Dv], video_mask [B, S] (bool or 0/1, any trailing 1-dims), query: the
        CLIP-space vectors [B, Dc] (a sentence's text embedding) or, in training, the candidate
        frames [B, K, Dc] the selector chooses from (a tensor or ``QueryBatch(vectors=...)``).

        Returns ``timestamps`` [B, 2] (normalised, ReLU'd, neither clamped nor ordered, as the
        reference), ``spans`` (under ``self.readout``; by default the same: the seed reads the regressor)
        and ``attention_weights`` [B, S].
        """
        q = self.query_vector(query)  # query first: the selector's dropout draws come before the video's
        return self._ground(q, self.encode_video(video_feats, video_mask), video_mask)

    def query_vector(self, query: "QueryBatch | Tensor") -> Tensor:
        """The [B, Dc] query: candidates [B, K, Dc] → the selector's choice (SPEC §5);
        a text vector [B, Dc] → L2-normalised (SPEC §4.1; the caller's tensor is left alone)."""
        vectors = as_query_batch(query).vectors
        if vectors is None:
            raise ModelInputError("the LFVMR network reads CLIP-space vectors (QueryBatch.vectors), not word ids")
        if vectors.shape[-1] != self.cfg.clip_dim:
            raise ModelInputError(f"query vectors have dimension {vectors.shape[-1]}, the model expects {self.cfg.clip_dim}")
        if vectors.dim() == 3:  # candidates [B, K, Dc]; the trainer's noise leaves unit rows, kept unit here
            chosen, _ = self.query_encoder.selector.select(F.normalize(vectors, dim=-1))
            return chosen
        if vectors.dim() != 2:
            raise ModelInputError(f"query vectors must be [B, Dc] or [B, K, Dc]; got {list(vectors.shape)}")
        if not torch.all(vectors.sum(1) != 0):
            raise ModelInputError("an all-zero query vector cannot be normalised")
        return F.normalize(vectors, dim=-1)

    def encode_video(self, video_feats: Tensor, video_mask: Tensor) -> Tensor:
        """The query-independent part: [B, S, Dv] → V [B, S, H] (positional encoding, GRU, video_mlp)."""
        if video_feats.shape[-1] != self.cfg.video_dim:
            raise ModelInputError(
                f"video features have dimension {video_feats.shape[-1]}, the model expects {self.cfg.video_dim}")
        mask = video_mask.reshape(video_mask.shape[0], -1).bool()  # [B, S]
        x = self.pe_dropout(self.pos_embd(video_feats))  # [B, S, Dv]
        return self.video_mlp(self.video_encoder(x, mask))  # [B, S, H]

    def ground(self, v: Tensor, video_mask: Tensor, query: "QueryBatch | Tensor") -> dict[str, Tensor]:
        """Cross/self-attention and head on an encoded video ``v`` [B, S, H] (one video, many queries)."""
        return self._ground(self.query_vector(query), v, video_mask)

    def _ground(self, q: Tensor, v: Tensor, video_mask: Tensor) -> dict[str, Tensor]:
        mask = video_mask.reshape(video_mask.shape[0], -1).bool()  # [B, S]
        lang = self.text_mlp(q)  # [B, H]
        v = v.transpose(0, 1)  # [S, B, H] time-major, as nn.MultiheadAttention's default layout
        if self.impl == "reference":
            v = self.crossattn(v, kv=lang.unsqueeze(0).expand(v.shape[0], -1, -1))
        else:
            v = v + self.crossattn.constant_keys_output(lang).unsqueeze(0)
        v = self.selfattn(v, key_padding_mask=~mask)
        timestamps, weights = self.loc_regressor_two_stage(v.transpose(0, 1), mask)
        return {"timestamps": timestamps, "attention_weights": weights,
                "spans": read_out_spans(self.readout, timestamps, weights, mask)}


def lfvmr_config_from_state_dict(state: dict[str, Tensor]) -> LFVMRConfig:
    """The sizes a reference checkpoint was trained with, read from its tensor shapes."""
    def shape(name: str) -> tuple[int, ...]:
        if name not in state:
            raise KeyError(name)
        return tuple(state[name].shape)

    video_dim = shape("video_encoder.gru.weight_ih_l0")[1]
    gru_hidden = shape("video_encoder.gru.weight_hh_l0")[1]
    hidden = shape("video_mlp.weight")[0]
    clip_dim = shape("text_mlp.weight")[1]
    selector_dim = shape("query_encoder.selector.embedding.weight")[0]
    pe_positions = shape("pos_embd.pe")[0]
    # layers by name prefix (mha1, mha2, ...): a tensor missing from one then shows as missing
    cross = len({k.split(".")[1] for k in state if k.startswith("crossattn.mha")})
    selfs = len({k.split(".")[1] for k in state if k.startswith("selfattn.mha")})
    layers = len({k.split(".")[5] for k in state if k.startswith("query_encoder.selector.atp_encoder.transformer_encoder.layers.")})
    ff = shape("query_encoder.selector.atp_encoder.transformer_encoder.layers.0.linear1.weight")[0]
    return LFVMRConfig(video_dim=video_dim, clip_dim=clip_dim, pe_positions=pe_positions, video_gru_hidden=gru_hidden,
                       hidden=hidden, cross_layers=cross, self_layers=selfs, selector_dim=selector_dim,
                       selector_layers=layers, selector_ff=ff)
