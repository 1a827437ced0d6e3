"""Temporal event proposals from frame features alone (PSVL's "TEP", reused by LFVMR).

Why this shape: neither paper trains a proposal network. Frames of one video are
clustered with k-means on their features; a run of consecutive frames that fall in
the same cluster is an *atomic event*; a *pseudo-event* is a run of one or more
consecutive atomic events. That is cheap (no learning, no labels) and follows
scene/activity changes, which is what query moments in Charades-STA and
ActivityNet Captions tend to follow.

Everything here is numpy on one ``[T, D]`` array: k-means is a handful of matrix
products, so thousands of videos per minute fit on one core
(``benchmarks/proposal_throughput.py``).

Spans are frame-index pairs ``(start, end)`` with ``end`` exclusive, so the
normalised span of a proposal is ``(start / T, end / T)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zeroground.errors import ZerogroundError


RANKINGS: tuple[str, ...] = ("coherence", "atoms", "contrast")


class ProposalError(ZerogroundError, ValueError):
    """Features or knobs that cannot give proposals."""


@dataclass
class ProposalConfig:
    """Knobs of :func:`propose_events` (see docs/methods.md for where each default comes from).

    Lengths ``min_len``/``max_len`` are fractions of the video, so one setting serves
    30-second Charades clips, 2-minute ActivityNet videos and 20-frame demo clips.
    """

    num_clusters: int = 5          # k of k-means (capped at the number of frames)
    min_len: float = 0.1           # shortest pseudo-event, fraction of the video
    max_len: float = 0.85          # longest pseudo-event, fraction of the video
    max_proposals: int = 8         # pseudo-events kept per video
    max_atoms: int = 3             # most atomic events one pseudo-event may join
    min_atom_frames: int = 2       # shorter runs are merged into their closest neighbour
    smooth: int = 3                # moving-average window over frames before clustering (1 = off)
    n_init: int = 3                # k-means restarts; the lowest inertia wins
    max_iter: int = 30
    seed: int = 0
    ranking: str = "coherence"     # which candidates to keep (RANKINGS; see compose_events)


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def _smooth(x: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along time (edge-replicated), so a single odd frame
    does not open a new atomic event."""
    if window <= 1 or x.shape[0] < 3:
        return x
    window = min(window, x.shape[0])
    left = (window - 1) // 2
    right = window - 1 - left
    padded = np.concatenate([np.repeat(x[:1], left, 0), x, np.repeat(x[-1:], right, 0)])
    csum = np.cumsum(np.concatenate([np.zeros((1, x.shape[1]), x.dtype), padded]), axis=0)
    return (csum[window:] - csum[:-window]) / window


def kmeans(x: np.ndarray, k: int, *, n_init: int = 3, max_iter: int = 30,
           rng: np.random.Generator) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; returns labels ``[T]``.

    Written out (instead of scikit-learn) because it is twenty lines, keeps the
    dependency list short, and on ~100 x 1024 inputs the fixed overhead of a
    library call dominates.
    """
    t = x.shape[0]
    k = max(1, min(k, t))
    sq = np.einsum("td,td->t", x, x)  # [T]
    best_labels, best_inertia = np.zeros(t, dtype=np.int64), np.inf
    for _ in range(max(1, n_init)):
        # k-means++ seeding
        centres = np.empty((k, x.shape[1]), dtype=x.dtype)
        centres[0] = x[rng.integers(t)]
        d2 = np.maximum(sq - 2 * x @ centres[0] + centres[0] @ centres[0], 0.0)  # [T]
        for c in range(1, k):
            total = d2.sum()
            idx = rng.integers(t) if total <= 0 else rng.choice(t, p=d2 / total)
            centres[c] = x[idx]
            d2 = np.minimum(d2, np.maximum(sq - 2 * x @ centres[c] + centres[c] @ centres[c], 0.0))
        labels = np.full(t, -1, dtype=np.int64)
        for _ in range(max_iter):
            dist = sq[:, None] - 2 * x @ centres.T + np.einsum("kd,kd->k", centres, centres)[None]  # [T, K]
            new = dist.argmin(1)
            if np.array_equal(new, labels):
                break
            labels = new
            onehot = (labels[None, :] == np.arange(k)[:, None]).astype(x.dtype)  # [K, T]
            counts = onehot.sum(1)  # [K]
            sums = onehot @ x  # [K, D]
            empty = counts == 0
            centres[~empty] = sums[~empty] / counts[~empty, None]
            if empty.any():  # re-seed an empty cluster at the worst-fitted frame
                far = dist[np.arange(t), labels].argsort()[::-1][: int(empty.sum())]
                centres[empty] = x[far]
        inertia = float(dist[np.arange(t), labels].sum())
        if inertia < best_inertia:
            best_inertia, best_labels = inertia, labels.copy()
    return best_labels


def atomic_events(labels: np.ndarray, features: np.ndarray | None = None,
                  min_atom_frames: int = 1) -> np.ndarray:
    """Runs of equal consecutive labels as ``[A, 2]`` (start, end-exclusive).

    Runs shorter than ``min_atom_frames`` are merged into the neighbour whose mean
    feature is closest (or the longer neighbour without features): k-means on
    noisy frames otherwise cuts one activity into flickering one-frame pieces.
    """
    t = labels.shape[0]
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    bounds = np.concatenate([[0], change, [t]])
    runs = [[int(a), int(b)] for a, b in zip(bounds[:-1], bounds[1:])]
    while len(runs) > 1:
        lengths = [b - a for a, b in runs]
        i = int(np.argmin(lengths))
        if lengths[i] >= min_atom_frames:
            break
        if i == 0:
            j = 1
        elif i == len(runs) - 1:
            j = i - 1
        elif features is not None:
            me = features[runs[i][0]:runs[i][1]].mean(0)
            left = features[runs[i - 1][0]:runs[i - 1][1]].mean(0)
            right = features[runs[i + 1][0]:runs[i + 1][1]].mean(0)
            j = i - 1 if np.linalg.norm(me - left) <= np.linalg.norm(me - right) else i + 1
        else:
            j = i - 1 if lengths[i - 1] >= lengths[i + 1] else i + 1
        lo, hi = min(i, j), max(i, j)
        runs[lo] = [runs[lo][0], runs[hi][1]]
        del runs[hi]
    return np.asarray(runs, dtype=np.int64).reshape(-1, 2)


def boundary_contrast(x: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """How much each span ``[starts, ends)`` looks like one event: the mean cosine of its
    frames to its centroid minus the cosine between its centroid and the centroid of the
    frames just outside it (half the span's length on each side). ``x`` is ``[T, D]``
    with unit rows; returns ``[P]``. A span that cuts an activity in two, or spills over
    into the next one, scores lower than the span that matches it.
    """
    t = x.shape[0]
    csum = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, 0)])  # [T+1, D]
    inside = csum[ends] - csum[starts]  # [P, D]
    n = (ends - starts).astype(np.float64)
    inside_norm = np.linalg.norm(inside, axis=1)
    intra = inside_norm / n
    w = np.maximum(1, (ends - starts) // 2)
    lo, hi = np.maximum(0, starts - w), np.minimum(t, ends + w)
    outside = (csum[starts] - csum[lo]) + (csum[hi] - csum[ends])  # [P, D]
    out_norm = np.linalg.norm(outside, axis=1)
    cross = np.where(out_norm > 0, np.einsum("pd,pd->p", inside, outside)
                     / np.maximum(inside_norm * out_norm, 1e-12), 0.0)
    return intra - cross


def coherence(x: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Mean cosine of each span's frames to the span's centroid (``x`` has unit rows) ->
    ``[P]``: high for a steady activity, low for a transition (walking, a camera pan)."""
    csum = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, 0)])  # [T+1, D]
    return np.linalg.norm(csum[ends] - csum[starts], axis=1) / (ends - starts)


def compose_events(atoms: np.ndarray, num_frames: int, *, min_len: float, max_len: float,
                   max_proposals: int, max_atoms: int, rng: np.random.Generator,
                   ranking: str = "coherence", features: np.ndarray | None = None) -> np.ndarray:
    """Pseudo-events = runs of 1..``max_atoms`` consecutive atomic events within the
    length bounds; at most ``max_proposals``, returned sorted by start.

    Which candidates are kept (``ranking``):

    * ``coherence`` (default): fewer atoms first, then the most coherent (mean cosine of
      frames to the span's centroid) -- a single atomic event is the unit most likely to
      be one action, and among those a steady one beats a transition (walking, a pan);
    * ``atoms``: fewer atoms first, ties in random order;
    * ``contrast``: highest :func:`boundary_contrast`, regardless of atom count.

    ``features`` (``[T, D]``, unit rows) are needed by ``coherence`` and ``contrast``.
    If nothing fits the bounds (very short or one-shot videos) the span whose length is
    closest to the bounds is kept, so no video is silently dropped.
    """
    a = atoms.shape[0]
    i, j = np.triu_indices(a)  # candidate runs atoms[i..j]
    keep = (j - i) < max_atoms
    i, j = i[keep], j[keep]
    starts, ends = atoms[i, 0], atoms[j, 1]
    frac = (ends - starts) / num_frames
    ok = (frac >= min_len - 1e-9) & (frac <= max_len + 1e-9)
    if not ok.any():
        gap = np.maximum(min_len - frac, 0) + np.maximum(frac - max_len, 0)
        ok = gap <= gap.min() + 1e-9
    starts, ends, n_atoms = starts[ok], ends[ok], (j - i)[ok]
    if ranking != "atoms" and features is None:
        raise ProposalError(f"ranking {ranking!r} needs the frame features")
    if ranking == "contrast":
        score = boundary_contrast(features, starts, ends)
        order = np.lexsort((rng.random(starts.shape[0]), -score))[:max_proposals]
    elif ranking == "coherence":
        score = coherence(features, starts, ends)
        order = np.lexsort((-score, n_atoms))[:max_proposals]
    else:
        order = np.lexsort((rng.random(starts.shape[0]), n_atoms))[:max_proposals]
    spans = np.stack([starts[order], ends[order]], 1)
    return spans[np.lexsort((spans[:, 1], spans[:, 0]))]


def propose_events(features: np.ndarray, *, num_clusters: int = 5, min_len: float = 0.1,
                   max_len: float = 0.85, max_proposals: int = 8, seed: int = 0,
                   max_atoms: int = 3, min_atom_frames: int = 2, smooth: int = 3,
                   n_init: int = 3, max_iter: int = 30, ranking: str = "coherence") -> np.ndarray:
    """Pseudo-events of one video from its frame features ``[T, D]``.

    Returns an int array ``[P, 2]`` of ``(start, end)`` frame indices, ``end``
    exclusive, sorted by start; ``P >= 1`` for any video with at least one frame.
    Deterministic for a given ``seed``.
    """
    feats = np.asarray(features)
    if feats.ndim != 2:
        raise ProposalError(f"features must be [T, D], found shape {feats.shape}")
    if feats.shape[0] == 0:
        raise ProposalError("features have no frames (T = 0): cannot propose events")
    if not np.isfinite(feats).all():
        raise ProposalError("features contain NaN or inf")
    if num_clusters < 1 or max_proposals < 1 or max_atoms < 1:
        raise ProposalError(
            f"num_clusters, max_proposals and max_atoms must be >= 1, found "
            f"{num_clusters}, {max_proposals}, {max_atoms}")
    if ranking not in RANKINGS:
        raise ProposalError(f"unknown ranking {ranking!r}; choose one of {list(RANKINGS)}")
    if not 0.0 <= min_len <= max_len <= 1.0:
        raise ProposalError(f"need 0 <= min_len <= max_len <= 1, found min_len={min_len}, max_len={max_len}")
    rng = np.random.default_rng(seed)
    t = feats.shape[0]
    # Cosine geometry: CLIP/I3D frame features differ in norm for reasons (blur,
    # exposure) unrelated to what happens in the frame.
    x = _normalise_rows(_smooth(feats.astype(np.float64), smooth))
    labels = kmeans(x, num_clusters, n_init=n_init, max_iter=max_iter, rng=rng)
    atoms = atomic_events(labels, x, min_atom_frames=min_atom_frames)
    return compose_events(atoms, t, min_len=min_len, max_len=max_len,
                          max_proposals=max_proposals, max_atoms=max_atoms, rng=rng,
                          ranking=ranking, features=x)


def propose_events_with(features: np.ndarray, cfg: ProposalConfig) -> np.ndarray:
    """:func:`propose_events` with knobs from a :class:`ProposalConfig`."""
    return propose_events(
        features, num_clusters=cfg.num_clusters, min_len=cfg.min_len, max_len=cfg.max_len,
        max_proposals=cfg.max_proposals, seed=cfg.seed, max_atoms=cfg.max_atoms,
        min_atom_frames=cfg.min_atom_frames, smooth=cfg.smooth, n_init=cfg.n_init,
        max_iter=cfg.max_iter, ranking=cfg.ranking)
