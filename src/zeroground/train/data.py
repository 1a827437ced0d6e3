"""Annotations + features → arrays the trainer and the evaluator batch from.

Feature dimensions are checked against the model before anything heavy happens,
and every missing video is reported at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from zeroground.errors import ZerogroundError
from zeroground.model.preprocess import encode_queries, segment_batch
from zeroground.model.psvl import ModelConfig, QueryBatch


class TrainingDataError(ZerogroundError, ValueError):
    """Training or evaluation inputs that do not fit together (message says what and where)."""


def query_tokens(moments: Sequence, where: str) -> list[list[str]]:
    """Each moment's ``tokens``; where a file has none, its sentences simplified by spaCy
    (as PSVL does at test time)."""
    if all(m.tokens is not None for m in moments):
        return [list(m.tokens) for m in moments]
    missing = [i for i, m in enumerate(moments) if m.tokens is None and not m.sentence]
    if missing:
        raise TrainingDataError(f"{where}: item {missing[0]} has neither tokens nor a sentence")
    from zeroground.pseudo.text import simplify  # spaCy: imported only when needed

    todo = [i for i, m in enumerate(moments) if m.tokens is None]
    simplified = simplify([moments[i].sentence for i in todo])
    tokens = [list(m.tokens) if m.tokens is not None else None for m in moments]
    for i, toks in zip(todo, simplified):
        tokens[i] = list(toks)
    return tokens  # type: ignore[return-value]


def query_sentences(moments: Sequence) -> list[str]:
    """Each moment's sentence; where it has none, its tokens joined (what a text encoder embeds)."""
    return [m.sentence or " ".join(m.tokens or []) for m in moments]


def moment_queries(moments: Sequence, query_encoder: str, where: str, text_encoder: Any = None):
    """The one sentence → query conversion: word tokens (:func:`query_tokens`) for a token-query
    model, else the text encoder's embeddings of the sentences, ``[N, D]`` (``text_encoder``: a
    loaded encoder, or a CLIP path / hub id)."""
    if query_encoder == "tokens":
        return query_tokens(moments, where)
    if text_encoder is None:
        raise TrainingDataError(f"{where}: a {query_encoder!r}-query model needs a text encoder to embed the sentences")
    if isinstance(text_encoder, (str, Path)):
        from zeroground.features.clip import load_clip

        text_encoder = load_clip(str(text_encoder))
    return text_encoder.encode_texts(query_sentences(moments))


def open_features_for(path: str | Path, cfg: ModelConfig, videos: Sequence[str]):
    """Open a FeatureStore, check its dimension against the model and that every video is there."""
    from zeroground.features.store import FeatureStore

    from zeroground.model.predict import check_feature_dim

    store = FeatureStore.open(path)
    check_feature_dim(store.dim, cfg, where=str(path))
    store.require(sorted(set(videos)))
    return store


@dataclass
class GroundingData:
    """N samples over V videos; videos are fetched through ``video`` (preloaded or lazy)."""

    video_ids: list[str]  # [V]
    video_index: np.ndarray  # [N] → position in video_ids
    spans: np.ndarray  # [N, 2] normalised (start, end), float64
    ids: np.ndarray | None  # [N, L] word ids (tokens models)
    vectors: np.ndarray | None  # [N, Dc] CLIP-space queries (clip models)
    video: Callable[[int], np.ndarray]  # position → [T, D] float32

    def __len__(self) -> int:
        return len(self.video_index)


def build_grounding_data(moments: Sequence, store, cfg: ModelConfig, vocab: dict[str, int] | None,
                         vectors: np.ndarray | None, where: str, preload: bool = True) -> GroundingData:
    video_ids = sorted({m.video for m in moments})
    pos = {v: i for i, v in enumerate(video_ids)}
    video_index = np.array([pos[m.video] for m in moments], dtype=np.int64)
    spans = np.array([m.span_normalized for m in moments], dtype=np.float64).reshape(-1, 2)
    ids = None
    if cfg.query_encoder == "tokens":
        if vocab is None:
            raise TrainingDataError("a token-query model needs a vocabulary")
        try:
            ids = encode_queries(query_tokens(moments, where), vocab, cfg.max_query_len)
        except ValueError as exc:
            raise TrainingDataError(f"{where}: {exc}") from exc
    else:
        if vectors is None:
            raise TrainingDataError(f"{where}: a clip-query model needs query vectors")
        if vectors.shape != (len(moments), cfg.clip_dim):
            raise TrainingDataError(
                f"{where}: query vectors have shape {list(vectors.shape)}, expected [{len(moments)}, {cfg.clip_dim}] "
                f"(one {cfg.clip_dim}-d vector per annotation, in file order)"
            )
    if preload:
        cache = [np.ascontiguousarray(store[v], dtype=np.float32) for v in video_ids]
        video = cache.__getitem__
    else:
        def video(i: int) -> np.ndarray:
            return store[video_ids[i]]
    return GroundingData(video_ids, video_index, spans, ids, vectors, video)


@dataclass
class TorchBatch:
    video_feats: torch.Tensor  # [B, S, D]
    video_mask: torch.Tensor  # [B, S] bool
    query: QueryBatch
    start: torch.Tensor  # [B] float32, normalised
    end: torch.Tensor  # [B]
    guidance: torch.Tensor  # [B, S] float32


def make_batch(data: GroundingData, idx: np.ndarray, cfg: ModelConfig,
               rng: np.random.Generator | None) -> TorchBatch:
    """Samples ``idx`` → model inputs; ``rng`` draws the training offsets (None: evaluation)."""
    seg = segment_batch([data.video(int(i)) for i in data.video_index[idx]], data.spans[idx], cfg.num_segments, rng)
    if data.ids is not None:
        query = QueryBatch(ids=torch.from_numpy(data.ids[idx]))
    else:
        query = QueryBatch(vectors=torch.from_numpy(np.ascontiguousarray(data.vectors[idx], dtype=np.float32)))
    spans = torch.from_numpy(data.spans[idx].astype(np.float32))  # reference: FloatTensor of the JSON floats
    return TorchBatch(torch.from_numpy(seg.video_feats), torch.from_numpy(seg.video_mask), query,
                      spans[:, 0].contiguous(), spans[:, 1].contiguous(), torch.from_numpy(seg.guidance))
