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
from zeroground.model.config import AnyModelConfig, QueryBatch
from zeroground.model.preprocess import draw_candidates, encode_queries, segment_batch


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


def open_features_for(path: str | Path, cfg: AnyModelConfig, videos: Sequence[str]):
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
    # the seed LFVMR's training queries: position → the video's CLIP frames [Tc, Dc], from which
    # each step draws the candidates (data.query_features; None for the other models)
    candidate_frames: Callable[[int], np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.video_index)


def open_query_features_for(path: str | Path, cfg: AnyModelConfig, videos: Sequence[str]):
    """The seed LFVMR's CLIP frame store (``data.query_features``): its width must be the
    model's ``clip_dim`` and it must hold every training video (frame rates may differ)."""
    from zeroground.features.store import FeatureStore

    if not Path(path).exists():
        raise TrainingDataError(f"query feature store not found: {path} (set data.query_features)")
    store = FeatureStore.open(path)
    if int(store.dim) != int(cfg.clip_dim):
        raise TrainingDataError(f"{path}: query features are {store.dim}-d but the model's query vectors are "
                                f"{cfg.clip_dim}-d (model.clip_dim); set model.clip_dim: {store.dim} or use other features")
    store.require(sorted(set(videos)))
    return store


def build_grounding_data(moments: Sequence, store, cfg: AnyModelConfig, vocab: dict[str, int] | None,
                         vectors: np.ndarray | None, where: str, preload: bool = True,
                         query_store=None) -> GroundingData:
    """Samples of ``moments``; ``query_store`` (the seed LFVMR in training): CLIP frames to draw
    the candidate queries from, instead of fixed ``vectors``."""
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
    elif query_store is None:
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
    frames = None
    if query_store is not None:
        if preload:
            frames = [np.ascontiguousarray(query_store[v], dtype=np.float32) for v in video_ids].__getitem__
        else:
            def frames(i: int) -> np.ndarray:
                return query_store[video_ids[i]]
    return GroundingData(video_ids, video_index, spans, ids, vectors, video, frames)


@dataclass
class TorchBatch:
    video_feats: torch.Tensor  # [B, S, D]
    video_mask: torch.Tensor  # [B, S] bool
    query: QueryBatch
    start: torch.Tensor  # [B] float32, normalised
    end: torch.Tensor  # [B]
    guidance: torch.Tensor  # [B, S] float32


def make_batch(data: GroundingData, idx: np.ndarray, cfg: AnyModelConfig,
               rng: np.random.Generator | None) -> TorchBatch:
    """Samples ``idx`` → model inputs; ``rng`` draws the training offsets (None: evaluation).

    With ``data.candidate_frames`` (the seed LFVMR), the query of each sample is its
    ``cfg.num_candidates`` candidate frames ``[B, K, Dc]``, drawn per item in the reference's
    order: video offset, CLIP offset, candidate permutation (SPEC §3)."""
    vids = data.video_index[idx]
    if data.candidate_frames is not None:
        seg_parts, cands = [], []
        for i, v in zip(idx, vids):
            seg_parts.append(segment_batch([data.video(int(v))], data.spans[[i]], cfg.num_segments, rng,
                                           cfg.gt_end_fallback))
            cands.append(draw_candidates(data.candidate_frames(int(v)), tuple(data.spans[i]), cfg.num_candidates,
                                         cfg.num_segments, rng))
        seg = type(seg_parts[0])(*(np.concatenate([getattr(p, f) for p in seg_parts]) for f in
                                   ("video_feats", "video_mask", "start_index", "end_index", "guidance")))
        query = QueryBatch(vectors=torch.from_numpy(np.stack(cands)))  # [B, K, Dc]
    else:
        seg = segment_batch([data.video(int(i)) for i in vids], data.spans[idx], cfg.num_segments, rng,
                            cfg.gt_end_fallback)
        if data.ids is not None:
            query = QueryBatch(ids=torch.from_numpy(data.ids[idx]))
        else:
            query = QueryBatch(vectors=torch.from_numpy(np.ascontiguousarray(data.vectors[idx], dtype=np.float32)))
    spans = torch.from_numpy(data.spans[idx].astype(np.float32))  # reference: FloatTensor of the JSON floats
    return TorchBatch(torch.from_numpy(seg.video_feats), torch.from_numpy(seg.video_mask), query,
                      spans[:, 0].contiguous(), spans[:, 1].contiguous(), torch.from_numpy(seg.guidance))
