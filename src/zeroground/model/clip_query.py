"""Query encoder for CLIP-space queries (LFVMR-style language-free training).

At training time the "query" is a CLIP *visual* feature of a proposed interval
(possibly perturbed); at test time it is the CLIP *text* feature of the sentence.
Both live in the same space, so one encoder serves both: each [Dc] vector becomes a
short sequence of ``clip_query_len`` fusion-width features, which the shared video
side and fusion blocks then treat exactly like word features.

The constructor reads only ``ModelConfig`` fields (clip_dim, clip_query_len, hidden,
dropout) so the architecture stays config-driven; internals may be refined later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from zeroground.model.config import ModelConfigError, ModelInputError

if TYPE_CHECKING:  # pragma: no cover
    from zeroground.model.config import ModelConfig, QueryBatch


class ClipQueryEncoder(nn.Module):
    """[B, Dc] CLIP-space vectors → (q [B, K, hidden], q_mask [B, K]) with K = clip_query_len."""

    def __init__(self, cfg: "ModelConfig", impl: str = "fast"):
        """``impl``: every query encoder is built with (cfg, impl); this one has one implementation."""
        super().__init__()
        if cfg.clip_query_len < 1:
            raise ModelConfigError(f"clip_query_len must be ≥ 1, found {cfg.clip_query_len}")
        self.clip_dim = cfg.clip_dim
        self.length = cfg.clip_query_len
        self.hidden = cfg.hidden
        self.expand = nn.Linear(cfg.clip_dim, cfg.clip_query_len * cfg.hidden)
        self.position = nn.Parameter(torch.zeros(cfg.clip_query_len, cfg.hidden))
        self.feature_aggregation = nn.Sequential(nn.ReLU(), nn.Dropout(cfg.dropout))

    def forward(self, query: "QueryBatch") -> tuple[Tensor, Tensor]:
        vectors = query.vectors
        if vectors is None:
            raise ModelInputError("the 'clip' query encoder needs CLIP-space vectors (QueryBatch.vectors)")
        if vectors.dim() != 2 or vectors.shape[1] != self.clip_dim:
            raise ModelInputError(
                f"CLIP query vectors must have shape [B, {self.clip_dim}], found {list(vectors.shape)}"
            )
        B = vectors.shape[0]
        # unit length, as CLIP compares by cosine; perturbed vectors are renormalised too
        vectors = vectors / vectors.norm(dim=1, keepdim=True).clamp(min=1e-12)
        q = self.expand(vectors).view(B, self.length, self.hidden) + self.position  # [B, K, hidden]
        q_mask = torch.ones(B, self.length, dtype=torch.bool, device=vectors.device)  # [B, K]
        return self.feature_aggregation(q), q_mask
