"""Two-stage search of a library: candidate videos, then moments inside them.

Stage 1 (whole library): the sentence's CLIP embedding against every frame vector, an exact
matrix product (or, in a library with a FAISS file, its IVF index returning the best frames);
a video's score is its best frame's cosine similarity, and the ``candidates`` best videos go on.

Stage 2 (candidates only): the grounding model -- or, without one, a training-free rule from
:data:`LOCALIZERS` -- proposes spans in each candidate, computed by the same ``Grounder``
the ``ground`` command uses. Spans of different videos are ranked by their *mean cosine
similarity to the sentence inside the span*: the within-video scores (inside minus outside)
say where a moment is in its video, not whether the video shows it, while the absolute
similarity is in one space for all videos.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from zeroground.ground.training_free import NMS_THRESHOLD
from zeroground.library.index import Library, LibraryError

# Frames FAISS returns per query: candidate videos are read off these (each video's best frame).
FAISS_FRAMES = 4096
FAISS_NPROBE = 32


def _windows_rule(feats: np.ndarray, query: np.ndarray, duration: float, top_k: int) -> list[tuple[float, float]]:
    from zeroground.ground.training_free import score_windows

    res = score_windows(feats, query, duration, top_k=top_k)
    return [(float(a), float(b)) for a, b in res.spans]


# Training-free localizers for stage 2: (features [T, D], query [D], duration s, k) -> spans (s).
LOCALIZERS: dict[str, Callable[[np.ndarray, np.ndarray, float, int], list[tuple[float, float]]]] = {
    "windows": _windows_rule,
}
DEFAULT_LOCALIZER = "windows"


@dataclass(frozen=True)
class SearchHit:
    video: str
    start: float  # seconds
    end: float  # seconds
    score: float  # mean cosine similarity inside [start, end): comparable across videos
    video_score: float  # stage 1: the video's best frame similarity
    source: str  # "model" or the training-free localizer's name


@dataclass(frozen=True)
class SearchResult:
    hits: list[SearchHit]
    note: str | None = None  # e.g. the query was truncated
    candidates: int = 0


def _tiou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def span_similarity(sim: np.ndarray, start: float, end: float, duration: float) -> float:
    """Mean of ``sim`` [T] over the feature frames covering [start, end] seconds."""
    t = len(sim)
    s = min(t - 1, max(0, int(np.floor(start / duration * t))))
    e = min(t, max(s + 1, int(np.ceil(end / duration * t))))
    return float(sim[s:e].mean())


class Searcher:
    """A library plus the query side: encoder (checked against the library), model, rule."""

    def __init__(self, library: Library | str | Path, model: str | Path | None = None, *,
                 encoder: str | None = None, localizer: str = DEFAULT_LOCALIZER, device: str = "cpu") -> None:
        from zeroground.ground.grounder import TRAINING_FREE, Grounder

        self.library = library if isinstance(library, Library) else Library.open(library)
        if localizer not in LOCALIZERS:
            raise LibraryError(f"unknown localizer {localizer!r}; choose from {sorted(LOCALIZERS)}")
        self.localizer = localizer
        lib = self.library
        name = encoder or lib.encoder
        lib.check_encoder(name)
        self.grounder = Grounder(model if model is not None else TRAINING_FREE, name, fps=lib.fps, device=device)
        lib.check_encoder(self.grounder.encoder_name)  # a model directory records its own encoder
        if self.grounder.clip.dim != lib.dim:
            raise LibraryError(f"encoder {name!r} embeds in {self.grounder.clip.dim}-d, library {lib.root} holds {lib.dim}-d vectors")
        self.trained = model is not None and str(model) != TRAINING_FREE
        self._lock = threading.Lock()  # one torch forward at a time; numpy stage 1 runs in parallel

    # ------------------------------------------------------------------ query side
    def embed(self, query: str) -> tuple[np.ndarray, str | None]:
        """CLIP embedding [D] of ``query`` and a note when the text encoder truncated it."""
        from zeroground.ground.grounder import GroundError

        if not isinstance(query, str) or not query.strip():
            raise GroundError("empty query: give a sentence describing the moment")
        note = None
        clip = self.grounder.clip
        limit = getattr(clip, "max_text_len", None)
        tok = getattr(clip, "tokenizer", None)
        with self._lock:
            if limit and tok is not None:
                n = len(tok(query, truncation=False)["input_ids"])
                if n > limit:
                    note = f"query truncated: {n} tokens, the text encoder reads the first {limit}"
            return self.grounder.embed_query(query), note

    # ------------------------------------------------------------------ stages
    def candidates(self, q: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Stage 1 -> (video indices [C], best-frame similarities [C]), best first."""
        lib = self.library
        if len(lib) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        n = min(n, len(lib))
        if lib.faiss_index is not None:
            lib.faiss_index.nprobe = FAISS_NPROBE
            sims, rows = lib.faiss_index.search(q[None].astype(np.float32), min(FAISS_FRAMES, len(lib.vectors)))
            rows, sims = rows[0], sims[0]
            keep = rows >= 0
            vids = np.searchsorted(lib.offsets, rows[keep], side="right") - 1  # frame row -> video index
            best: dict[int, float] = {}
            for v, s in zip(vids.tolist(), sims[keep].tolist()):  # sorted best first: first seen is the max
                if v not in best:
                    best[v] = s
            order = list(best)[:n]
            return np.array(order, np.int64), np.array([best[v] for v in order], np.float32)
        sim = lib.vectors @ q  # [N]
        per_video = np.maximum.reduceat(sim, lib.offsets[:-1])  # [V] best frame per video
        top = np.argpartition(-per_video, n - 1)[:n] if n < len(per_video) else np.arange(len(per_video))
        top = top[np.argsort(-per_video[top], kind="stable")]
        return top.astype(np.int64), per_video[top]

    def search(self, query: str, k: int = 10, *, candidates: int | None = None, per_video: int = 1) -> SearchResult:
        """The ``k`` best moments for ``query`` across the library, best first."""
        if k < 1:
            raise LibraryError(f"k must be >= 1, got {k}")
        if per_video < 1:
            raise LibraryError(f"per_video must be >= 1, got {per_video}")
        q, note = self.embed(query)
        n_cand = candidates or max(3 * k, 30)
        vids, vscores = self.candidates(q, n_cand)
        lib = self.library
        hits: list[SearchHit] = []
        entries = [lib.videos[vi] for vi in vids.tolist()]
        feats = [np.asarray(lib.vectors[lib.offsets[vi]:lib.offsets[vi + 1]], dtype=np.float32) for vi in vids.tolist()]
        model_spans: list = [None] * len(entries)
        if self.trained:  # the model's span of every candidate, in batched forward passes
            with self._lock:
                model_spans = self.grounder._trained.predict_many(feats, [e.duration for e in entries], query, q)
        for entry, f, vs, ms in zip(entries, feats, vscores.tolist(), model_spans):
            sim = f @ q  # [T]
            spans: list[tuple[float, float, str]] = []
            if ms is not None:
                spans.append((ms[0], ms[1], "model"))
            if len(spans) < per_video:  # further spans: the training-free rule, overlapping ones dropped
                for a, b in LOCALIZERS[self.localizer](f, q, entry.duration, per_video + 1):
                    if len(spans) >= per_video:
                        break
                    if ms is not None and _tiou((a, b), ms) > NMS_THRESHOLD:
                        continue
                    spans.append((a, b, self.localizer))
            for a, b, src in spans:
                hits.append(SearchHit(entry.id, a, b, span_similarity(sim, a, b, entry.duration), float(vs), src))
        hits.sort(key=lambda h: -h.score)
        return SearchResult(hits[:k], note, len(vids))

    def ground(self, video_id: str, query: str, top_k: int = 5):
        """Spans of ``query`` in one library video, from its stored features (no decoding)."""
        from zeroground.ground.grounder import EncodedVideo

        entry = self.library.video(video_id)
        self.embed(query)
        enc = EncodedVideo(key=f"library:{entry.id}", features=np.asarray(self.library.features(entry.id), np.float32),
                           duration=entry.duration, fps=self.library.fps)
        with self._lock:
            return self.grounder.ground(enc, query, top_k=top_k)
