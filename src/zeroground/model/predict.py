"""Library-level inference: features + queries → normalised spans and attention.

``predict_spans`` serves both uses:
* one video, many queries (``zeroground ground``): the video is resampled and
  encoded once, then every query is fused with it;
* a batch of (video, query) pairs (``zeroground evaluate``): pass a list of videos,
  one per query.
Queries are token lists (token model) or an [N, Dc] array of CLIP text vectors (clip model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from zeroground.model.preprocess import encode_queries, segment_batch
from zeroground.model.psvl import GroundingModel, ModelConfig, QueryBatch
from zeroground.model.config import ModelInputError


@dataclass
class SpanPredictions:
    spans: np.ndarray  # [N, 2] normalised (start, end) as the model outputs them (unclamped; under model.readout)
    attention: np.ndarray  # [N, S] temporal attention weights over segments
    video_mask: np.ndarray  # [N, S] valid segments

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """``np.asarray(predictions)`` is the [N, 2] span array."""
        return self.spans if dtype is None else self.spans.astype(dtype)

    def __len__(self) -> int:
        return len(self.spans)


class FeatureDimError(ModelInputError):
    """Video features whose dimension does not fit the model."""


def check_feature_dim(features_dim: int, cfg: ModelConfig, where: str = "features",
                      remedy: str = "use features from the encoder the model was trained on") -> None:
    """The one "features do not fit the model" check: a clear error before any work
    (training, evaluation, grounding and prediction all call it)."""
    if int(features_dim) != int(cfg.video_dim):
        raise FeatureDimError(f"{where}: features are {features_dim}-d but the model expects {cfg.video_dim}-d "
                              f"video features (model.video_dim); {remedy}")


def query_batch(cfg: ModelConfig, vocab: dict[str, int] | None,
                queries: Sequence[Sequence[str]] | np.ndarray) -> QueryBatch:
    """Token lists or [N, Dc] CLIP vectors → the QueryBatch the model's query encoder takes."""
    if cfg.query_encoder == "tokens":
        if isinstance(queries, np.ndarray):
            raise ModelInputError("this model reads word tokens; got an array of vectors")
        if vocab is None:
            raise ModelInputError("a token-query model needs its vocabulary")
        return QueryBatch(ids=torch.from_numpy(encode_queries(queries, vocab, cfg.max_query_len)))
    vectors = np.asarray(queries, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != cfg.clip_dim:
        raise ModelInputError(f"this model reads CLIP vectors of shape [N, {cfg.clip_dim}]; got {list(vectors.shape)}")
    return QueryBatch(vectors=torch.from_numpy(vectors))


def _slice(q: QueryBatch, a: int, b: int) -> QueryBatch:
    return QueryBatch(ids=None if q.ids is None else q.ids[a:b], vectors=None if q.vectors is None else q.vectors[a:b])


@torch.no_grad()
def predict_spans(model: GroundingModel, cfg: ModelConfig, vocab: dict[str, int] | None,
                  features: np.ndarray | Sequence[np.ndarray], queries: Sequence[Sequence[str]] | np.ndarray,
                  batch_size: int = 256, device: str | torch.device | None = None) -> SpanPredictions:
    """Ground ``queries`` in ``features``: one [T, D] array (shared by all queries) or a
    list with one [T, D] array per query. Spans are normalised to the video length."""
    model.eval()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    q_all = query_batch(cfg, vocab, queries)
    q_all = QueryBatch(ids=None if q_all.ids is None else q_all.ids.to(device),
                       vectors=None if q_all.vectors is None else q_all.vectors.to(device))
    n = len(q_all)
    shared = isinstance(features, np.ndarray) and features.ndim == 2
    videos = [features] if shared else list(features)
    if not shared and len(videos) != n:
        raise ModelInputError(f"{len(videos)} videos for {n} queries; pass one video, or one per query")
    for i, v in enumerate(videos):
        if v.ndim != 2:
            raise ModelInputError(f"video features must be [T, D]; item {i} has shape {list(v.shape)}")
        check_feature_dim(v.shape[1], cfg, where="video features")
    spans = np.zeros((n, 2), dtype=np.float32)
    attention = np.zeros((n, cfg.num_segments), dtype=np.float32)
    masks = np.zeros((n, cfg.num_segments), dtype=bool)
    if shared:
        seg = segment_batch(videos, num_segments=cfg.num_segments)
        mask = torch.from_numpy(seg.video_mask).to(device)  # [1, S]
        v = model.encode_video(torch.from_numpy(seg.video_feats).to(device), mask)  # [1, S, D], encoded once
    for a in range(0, n, batch_size):
        b = min(n, a + batch_size)
        if shared:
            out = model.ground(v.expand(b - a, -1, -1), mask.expand(b - a, -1), _slice(q_all, a, b))
            masks[a:b] = seg.video_mask
        else:
            seg_b = segment_batch(videos[a:b], num_segments=cfg.num_segments)
            out = model(torch.from_numpy(seg_b.video_feats).to(device), torch.from_numpy(seg_b.video_mask).to(device),
                        _slice(q_all, a, b))
            masks[a:b] = seg_b.video_mask
        spans[a:b] = out["spans"].cpu().numpy()
        attention[a:b] = out["attention_weights"].cpu().numpy()
    return SpanPredictions(spans, attention, masks)
