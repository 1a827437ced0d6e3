"""Inputs of the PSVL model, exactly as the reference prepares them (SPEC.md §1–2).

* ``build_vocab``: token → index from the *training* annotations, sorted by count
  ascending with a stable sort (ties keep first appearance), indices from 4.
* ``encode_queries``: token lists → [N, max_len] ids (unknown → 1, pad 0).
* ``sample_segments`` / ``segment_batch``: a [T, D] video → 128 segment rows, the video
  mask, the GT segment indices and the temporal-attention guidance mask, including the
  legacy random offset used in training and the end-index quirk (127 when not found).

The reference loops over segments to find the GT indices; here it is a
``searchsorted``, and a whole batch is assembled with array operations.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from zeroground.errors import ZerogroundError
from zeroground.model.config import ModelInputError

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIAL_TOKENS = {"<PAD>": PAD, "<UNK>": UNK, "<S>": BOS, "<E>": EOS}


class EmptyQueryError(ZerogroundError, ValueError):
    """A query with no tokens cannot be encoded (the reference would crash on it)."""


def build_vocab(token_lists: Iterable[Sequence[str]]) -> dict[str, int]:
    """Vocabulary of the reference: specials 0–3, then tokens by ascending count.

    ``sorted`` is stable and ``Counter`` keeps first-appearance order, so ties are
    broken by first appearance in the file, as in PSVL — the most frequent token
    gets the largest index.
    """
    counts: Counter[str] = Counter()
    for tokens in token_lists:
        counts.update(tokens)
    vocab = dict(SPECIAL_TOKENS)
    for i, (token, _count) in enumerate(sorted(counts.items(), key=lambda kv: kv[1])):
        vocab[token] = i + len(SPECIAL_TOKENS)
    return vocab


def encode_queries(token_lists: Sequence[Sequence[str]], vocab: dict[str, int], max_len: int = 10) -> np.ndarray:
    """Token lists → int64 [N, max_len]: unknown → 1, truncated, 0-padded.

    Raises EmptyQueryError naming the first query without tokens.
    """
    ids = np.zeros((len(token_lists), max_len), dtype=np.int64)  # [N, L]
    for i, tokens in enumerate(token_lists):
        if len(tokens) == 0:
            raise EmptyQueryError(f"query {i} has no tokens; a grounding query needs at least one word")
        row = [vocab.get(tok, UNK) for tok in tokens[:max_len]]
        ids[i, : len(row)] = row
    return ids


def segment_stride(num_frames: int, num_segments: int = 128) -> float:
    return 1.0 if num_frames <= num_segments else num_frames / num_segments


def max_offset(num_frames: int, num_segments: int = 128) -> int:
    """Largest training offset: legacy ``np.random.random_integers(0, r)`` with
    r = stride − 0.5, minus 1 when r is whole; random_integers truncates r."""
    r = segment_stride(num_frames, num_segments) - 0.5
    if r == np.floor(r):
        r -= 1.0
    return max(int(r), 0)


def draw_offset(num_frames: int, rng: np.random.Generator | None, num_segments: int = 128) -> int:
    """Training offset, uniform on {0..max_offset}; 0 when ``rng`` is None (evaluation)."""
    if rng is None:
        return 0
    return int(rng.integers(0, max_offset(num_frames, num_segments) + 1))


def sample_positions(num_frames: int, num_segments: int = 128, offset: int = 0) -> np.ndarray:
    """Frame index of each segment: round(arange(offset, T − 0.5, stride)) (half to even), ≤ num_segments."""
    stride = segment_stride(num_frames, num_segments)
    return np.round(np.arange(offset, num_frames - 0.5, stride)).astype(np.int64)[:num_segments]


END_FALLBACKS = ("last_segment", "after_valid")


def gt_segment_indices(positions: np.ndarray, num_frames: int, start: np.ndarray | float, end: np.ndarray | float,
                       num_segments: int = 128, end_fallback: str = "last_segment") -> tuple[np.ndarray, np.ndarray]:
    """Segment i with p[i] ≤ x·(T−1) < p[i+1] for x = start / end (normalised).

    Not found → 0 for the start; for the end ``num_segments − 1`` even when the video has
    fewer segments (PSVL's quirk, ``end_fallback="last_segment"``) or n + 1 with n = the
    number of valid segments (LFVMR's, ``"after_valid"``; LFVMR SPEC §2).
    """
    if end_fallback not in END_FALLBACKS:
        raise ValueError(f"end_fallback must be one of {END_FALLBACKS}, got {end_fallback!r}")
    end_missing = num_segments - 1 if end_fallback == "last_segment" else len(positions) + 1
    start = np.asarray(start, dtype=np.float64) * float(num_frames - 1.0)
    end = np.asarray(end, dtype=np.float64) * float(num_frames - 1.0)

    def locate(x: np.ndarray, missing: int) -> np.ndarray:
        i = np.searchsorted(positions, x, side="right") - 1
        found = (i >= 0) & (i < len(positions) - 1)
        return np.where(found, i, missing)

    return locate(start, 0), locate(end, end_missing)


@dataclass
class SegmentBatch:
    """Model inputs for a batch of (video, span) samples."""

    video_feats: np.ndarray  # [B, S, D] float32
    video_mask: np.ndarray  # [B, S] bool
    start_index: np.ndarray  # [B] int64
    end_index: np.ndarray  # [B] int64
    guidance: np.ndarray  # [B, S] float32, 1 on [start_index, end_index]


def segment_batch(videos: Sequence[np.ndarray], spans: np.ndarray | None = None, num_segments: int = 128,
                  rng: np.random.Generator | None = None, end_fallback: str = "last_segment") -> SegmentBatch:
    """Sample ``num_segments`` rows from each [T, D] video (offsets from ``rng`` when training).

    ``spans`` [B, 2] are normalised GT (start, end); without them the indices are 0 and
    the guidance mask is empty.
    """
    B = len(videos)
    if B == 0:
        raise ModelInputError("segment_batch needs at least one video")
    D = videos[0].shape[1]
    feats = np.zeros((B, num_segments, D), dtype=np.float32)  # [B, S, D]
    mask = np.zeros((B, num_segments), dtype=bool)  # [B, S]
    start_idx = np.zeros(B, dtype=np.int64)
    end_idx = np.zeros(B, dtype=np.int64)
    for b, video in enumerate(videos):
        T = video.shape[0]
        if T == 0:
            raise ModelInputError(f"video {b} of the batch has no frames")
        pos = sample_positions(T, num_segments, draw_offset(T, rng, num_segments))
        feats[b, : len(pos)] = video[pos]
        mask[b, : len(pos)] = True
        if spans is not None:
            s, e = gt_segment_indices(pos, T, spans[b, 0], spans[b, 1], num_segments, end_fallback)
            start_idx[b], end_idx[b] = int(s), int(e)
    seg = np.arange(num_segments)
    if spans is None:
        guidance = np.zeros((B, num_segments), dtype=np.float32)
    else:
        # [B, S]; with the "after_valid" fallback the mask may cover padding segments (LFVMR SPEC §2)
        guidance = ((seg >= start_idx[:, None]) & (seg <= end_idx[:, None])).astype(np.float32)
    return SegmentBatch(feats, mask, start_idx, end_idx, guidance)


def candidate_pool(num_valid: int, start_index: int, end_index: int) -> tuple[int, int]:
    """Rows [lo, hi) of the segmented CLIP sequence the seed LFVMR draws candidates from
    (SPEC §3): ``P[start : end − 1]``, which drops the span's last two segments.

    Where the reference breaks, zeroground keeps the span's first segment instead: an empty
    pool (end = start + 1; the reference raises ``IndexError``) and end = 0 (its slice end
    becomes −1 and the pool runs into the zero padding, whose rows turn into NaN)."""
    lo, hi = start_index, end_index - 1
    if end_index == 0 or hi <= lo:
        return start_index, start_index + 1
    return lo, min(hi, max(num_valid, lo + 1))


def candidate_rows(pool_size: int, k: int, rng: np.random.Generator | None) -> np.ndarray:
    """Which of ``pool_size`` rows become the ``k`` candidates (SPEC §3): more than k → k drawn
    without replacement in random order (a permutation's first k); else
    ``floor(linspace(0, pool_size − 1, k))`` (repeats). Without ``rng`` (no training) the
    first k of the pool."""
    if pool_size < 1:
        raise ModelInputError("a candidate pool needs at least one frame")
    if pool_size > k:
        return rng.permutation(pool_size)[:k] if rng is not None else np.arange(k)
    return np.floor(np.linspace(0, pool_size - 1, k)).astype(np.int64)


def draw_candidates(clip_frames: np.ndarray, span: tuple[float, float], k: int = 9, num_segments: int = 128,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """The seed LFVMR's ``k`` candidate frames ``[k, Dc]`` for one training item: the CLIP
    sequence ``[Tc, Dc]`` segmented like the video (its own offset draw), the span's segment
    indices with LFVMR's end fallback, the pool of :func:`candidate_pool` and the rows of
    :func:`candidate_rows`. RNG order as the reference: offset, then permutation."""
    T = clip_frames.shape[0]
    if T == 0:
        raise ModelInputError("a CLIP feature sequence with no frames has no candidates")
    pos = sample_positions(T, num_segments, draw_offset(T, rng, num_segments))
    s, e = gt_segment_indices(pos, T, span[0], span[1], num_segments, "after_valid")
    lo, hi = candidate_pool(len(pos), int(s), int(e))
    rows = candidate_rows(hi - lo, k, rng)
    return np.asarray(clip_frames[pos[lo + rows]], dtype=np.float32)  # [k, Dc]
