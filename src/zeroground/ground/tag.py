"""TAG without the LLM (Lee et al., BMVC 2025, arXiv 2508.07925; github.com/Nuetee/TAG @ 56dff410).

The ``--tckmeans`` no-LLM path, stage by stage (``/work/shared/training_free/SPEC.md`` §4):

T1 best-token similarity ``c`` and token ``b``;  T2 mask ``c > 0.2``, cleared where a
frame has no above-threshold neighbour (majority vote), frames ``I`` kept;  T3 the
"Box-Cox" re-shaping of ``c[I]`` (scipy's bounded scalar minimiser on the repo's own
objective) and min-max rescaling;  T4 temporal-aware pooling (21-row moving mean of the
raw best-token features with the time appended);  T5 temporally coherent k-means
(k-means++ seeded with ``torch.manual_seed(60)``'s CPU stream; distances averaged over
+-3 rows);  T6 runs of equal labels are segments;  T7 every pair of segment starts is a
proposal scored mean inside minus mean outside on the adjusted curve, rounded to 4
decimals;  T8 stable sort;  T9 starts refined by the dynamic scan;  T11 the first
``cand_num`` are candidates;  T12 IoU vote (gamma 0.6) picks the answer.

Torch float32 primitives (einsum, conv1d, cdist, mean) are used where the reference uses
them, which is what makes k-means near-ties come out as in the reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from zeroground.ground.tf_common import (
    MASK_THRESHOLD,
    TrainingFreeError,
    as_tokens,
    dynamic_pass,
    frame_similarity,
    iou_vote,
)

# TAG data_configs.py (BLIP-2 settings; dataset-level stride, see SPEC §1 table).
TAG_SETTINGS: dict[str, dict[str, float]] = {
    "charades": {"stride": 20, "gamma": 0.2, "cand_num": 12, "kmeans_k": 9, "window_radius": 7, "prior": 0.5,
                 "temporal_window_size": 21},
    "activitynet": {"stride": 40, "gamma": 0.8, "cand_num": 17, "kmeans_k": 9, "window_radius": 7, "prior": 1.0,
                    "temporal_window_size": 21},
}
VOTE_GAMMA = 0.6  # llm_prompting.select_proposal
KMEANS_SEED = 60  # torch.manual_seed(60) inside the reference's k-means
KMEANS_MAX_ITER = 100
KMEANS_ATOL, KMEANS_RTOL = 1e-4, 1e-5
SHIFT_EPS = 1e-6


@dataclass
class TagResult:
    spans: np.ndarray  # [C, 2] seconds, the candidates after the vote, best first
    confidence: np.ndarray  # [C] candidate confidences (score / first score), in vote order
    votes: np.ndarray  # [C] vote of each entry of ``spans``
    candidates: np.ndarray = field(repr=False)  # [C, 3] [start, end, conf] before the vote (rank order)
    initial_mask: np.ndarray = field(repr=False)  # [N] bool
    vote_mask: np.ndarray = field(repr=False)  # [N] bool
    masked_indices: np.ndarray = field(repr=False)  # [M] int64 I
    boxcox_lambda: float = 0.0
    adjusted: np.ndarray = field(default=None, repr=False)  # [M] float64 a
    tap: np.ndarray = field(default=None, repr=False)  # [M, D+1] float32 pooled features
    init_indices: list[int] = field(default_factory=list)
    labels: np.ndarray = field(default=None, repr=False)  # [M] k-means labels
    segments: list[tuple[int, int]] = field(default_factory=list)  # [s, e) compacted, sentinel (M, M) last
    proposals: np.ndarray = field(default=None, repr=False)  # [P, 6] lo, hi, start_f, end_f, rounded, unrounded
    sort_order: np.ndarray = field(default=None, repr=False)  # [P]
    dynamic_start: np.ndarray = field(default=None, repr=False)  # [N]
    ranked: np.ndarray = field(default=None, repr=False)  # [P, 3] refined start frame, end frame, score

    @property
    def top1(self) -> tuple[float, float]:
        return float(self.spans[0, 0]), float(self.spans[0, 1])


def tag_masks(c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """T2: (initial mask [N], majority-voted mask [N], selected frames I [M])."""
    init = c > MASK_THRESHOLD
    n = init.shape[0]
    vote = init.copy()
    if n >= 3:
        padded = np.concatenate([init, [False]]).astype(np.int64)
        votes = padded[:-2] + padded[1:-1] + padded[2:]  # frames 1..N-1: init[i-1] + init[i] + init[i+1]
        vote[1:] &= votes >= 2  # only ever clears; frame 0 is never examined (Q5)
    sel = np.flatnonzero(vote)
    if sel.size == 0:
        vote[:] = True
        if n < 3:
            # Without the vote the reference's selection *is* the initial mask (one array), so
            # selecting every frame also sets the mask the start refinement uses.
            init = vote.copy()
        sel = np.arange(n)
    return init, vote, sel.astype(np.int64)


def _boxcox_y(x: np.ndarray, lam: float) -> np.ndarray:
    return np.log(x) if lam == 0 else (x**lam - 1.0) / lam


def boxcox_adjust(x32: np.ndarray, gamma: float) -> tuple[np.ndarray, float]:
    """T3: the repo's "Box-Cox" re-shaping of ``x32`` [M] (f32) -> (adjusted [M] float64, lambda)."""
    from scipy.optimize import minimize_scalar

    x = np.asarray(x32, dtype=np.float32)
    if (x <= 0).any():
        x = x + np.abs(x.min()) + np.float32(SHIFT_EPS)
    m = x.shape[0]
    x64 = x.astype(np.float64)

    def objective(lam: float) -> float:
        y = _boxcox_y(x64, lam)
        return float(-np.sum(np.log(np.abs(y))) + 0.5 * m * np.log(np.var(y, ddof=1)))

    with np.errstate(divide="ignore", invalid="ignore"):
        lam = float(minimize_scalar(objective, bounds=(-2, 2), method="bounded").x)
    y = _boxcox_y(x64, lam)
    rng_y = y.max() - y.min()
    z = (y - y.min()) / rng_y if rng_y > 0 else np.zeros_like(y)  # a flat curve stays flat (reference: NaN)
    r = np.float32(x.max() - x.min())
    scale = float(r) if r > np.float32(gamma) else float(gamma)
    return z * scale + float(x.min()), lam


def temporal_pooling(video: torch.Tensor, best: np.ndarray, sel: np.ndarray, window: int) -> torch.Tensor:
    """T4: 21-row moving mean of [raw best-token feature, n/N] over the selected rows -> [M, D+1] f32."""
    n = video.shape[0]
    rows = video[torch.arange(n), torch.from_numpy(best)]  # [N, D] raw, un-normalised (Q11)
    t = (torch.arange(n, dtype=torch.float32) / n)[:, None]
    feats = torch.cat([rows, t], dim=1)[torch.from_numpy(sel)]  # [M, D+1]
    pad = window // 2
    padded = torch.cat([feats[:1].repeat(pad, 1), feats, feats[-1:].repeat(pad, 1)], dim=0)  # [M+2pad, D+1]
    ch = feats.shape[1]
    kernel = torch.full((ch, 1, window), 1.0 / window, dtype=torch.float32)
    return torch.nn.functional.conv1d(padded.t()[None], kernel, groups=ch)[0].t().contiguous()  # [M, D+1]


def coherent_kmeans(feats: torch.Tensor, k: int, window_radius: int) -> tuple[np.ndarray, list[int]]:
    """T5: temporal-coherence k-means -> (labels [M], k-means++ initial row indices).

    The draws come from a private CPU generator seeded like the reference's
    ``torch.manual_seed(60)``, so the global torch RNG is left alone.
    """
    m = feats.shape[0]
    gen = torch.Generator().manual_seed(KMEANS_SEED)
    first = int(torch.randint(0, m, (1,), generator=gen).item())
    init = [first]
    centroids = feats[[first]].clone()  # [1, D+1]
    for _ in range(1, k):
        d2 = torch.cdist(feats, centroids).min(dim=1).values ** 2  # [M]
        cum = torch.cumsum(d2 / d2.sum(), dim=0)
        u = torch.rand(1, generator=gen)
        nxt = int(torch.searchsorted(cum, u).item())
        if nxt >= m:
            raise TrainingFreeError(
                "TAG k-means++ found no row to draw (all selected frames coincide); the reference fails here too"
            )
        init.append(nxt)
        centroids = torch.cat([centroids, feats[[nxt]]], dim=0)  # [j+1, D+1]
    half = window_radius // 2
    labels = torch.zeros(m, dtype=torch.int64)
    inner = torch.arange(max(m - 2 * half, 0))[:, None] + torch.arange(2 * half + 1)[None]  # [M-2h, 2h+1]
    edges = sorted(set(range(min(half, m))) | set(range(max(half, m - half), m)))
    for _ in range(KMEANS_MAX_ITER):
        dist = torch.cdist(feats, centroids)  # [M, k] Euclidean
        # Row i: mean of E over rows max(0, i-h)..min(M-1, i+h). Interior rows as one gathered
        # [M-2h, 2h+1, k] mean, the few edge rows by slices: both reduce exactly like the
        # reference's per-row slice mean, which k-means near-ties are sensitive to.
        smooth = torch.empty_like(dist)
        if inner.shape[0]:
            smooth[half:m - half] = dist[inner].mean(dim=1)
        for i in edges:
            smooth[i] = dist[max(0, i - half):min(m, i + half + 1)].mean(dim=0)
        new_labels = torch.argmin(smooth, dim=1)
        new_centroids = centroids.clone()
        for j in range(k):
            members = new_labels == j
            if bool(members.any()):
                new_centroids[j] = feats[members].mean(dim=0)
        if torch.allclose(centroids, new_centroids, atol=KMEANS_ATOL, rtol=KMEANS_RTOL):
            break  # the reference returns the labels of the iteration before convergence (Q10)
        centroids = new_centroids
        labels = new_labels
    return labels.numpy(), init


def label_segments(labels: np.ndarray) -> list[tuple[int, int]]:
    """T6: maximal runs of equal labels as [s, e), then the sentinel (M, M)."""
    m = labels.shape[0]
    cuts = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [m]])
    return [(int(s), int(e)) for s, e in zip(starts, ends)] + [(m, m)]


def segment_proposals(adjusted: np.ndarray, segments: list[tuple[int, int]], sel: np.ndarray, n: int,
                      prior: float) -> np.ndarray:
    """T7: proposals over pairs of segment starts -> [P, 6] (lo, hi, start_f, end_f, rounded, unrounded)."""
    m = adjusted.shape[0]
    st = np.array([s for s, _ in segments], dtype=np.int64)
    p, q = np.triu_indices(st.shape[0], k=1)  # lexicographic pairs p < q
    lo, hi = st[p], st[q]
    keep = (hi - lo) <= n * prior  # compares a compacted length with all N frames (Q7)
    lo, hi = lo[keep], hi[keep]
    if lo.size == 0:
        return np.array([[0, m, 0, n, 1.0, 1.0]])
    cum = np.concatenate([[0.0], np.cumsum(adjusted)])  # float64
    length = hi - lo
    inner = cum[hi] - cum[lo]
    outer = cum[m] - inner
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(length == m, inner / length, inner / length - outer / np.maximum(m - length, 1))
    rounded = np.array([round(float(s), 4) for s in score])  # Python's round, as the reference
    start_f = sel[lo]
    end_f = np.where(hi < m, sel[np.minimum(hi, m - 1)], n)
    return np.stack([lo, hi, start_f, end_f, rounded, score], axis=1).astype(np.float64)


def tag(video: np.ndarray, text: np.ndarray, duration: float, setting: str = "charades") -> TagResult:
    """TAG (no LLM, ``--tckmeans``) on video features ``[N, D]`` or ``[N, K, D]`` and a text feature ``[D]``."""
    if setting not in TAG_SETTINGS:
        raise TrainingFreeError(f"unknown TAG setting {setting!r}; known: {sorted(TAG_SETTINGS)}")
    cfg = TAG_SETTINGS[setting]
    v = as_tokens(video)  # [N, K, D]
    n = v.shape[0]
    if n < 2:
        raise TrainingFreeError(f"TAG needs at least 2 feature frames, got {n} (the reference fails on one frame)")
    c, best = frame_similarity(v, text)  # T1
    init, vote, sel = tag_masks(c)  # T2
    m = sel.shape[0]
    if m < 2:
        raise TrainingFreeError(
            f"TAG needs at least 2 selected frames, but only frame {int(sel[0])} is above the 0.2 threshold after "
            "the majority vote (the reference's k-means fails with IndexError here)"
        )
    adjusted, lam = boxcox_adjust(c[sel], cfg["gamma"])  # T3
    tap = temporal_pooling(v, best, sel, int(cfg["temporal_window_size"]))  # T4
    k = min(int(cfg["kmeans_k"]), max(2, m))
    labels, init_idx = coherent_kmeans(tap, k, int(cfg["window_radius"]))  # T5
    segments = label_segments(labels)  # T6
    props = segment_proposals(adjusted, segments, sel, n, float(cfg["prior"]))  # T7
    rounded32 = props[:, 4].astype(np.float32)
    order = np.argsort(-rounded32, kind="stable")  # T8
    s_eff = min(int(cfg["stride"]), n // 2)
    dyn = dynamic_pass(c * init, init, s_eff)  # T9: raw similarities, initial mask
    start_f = dyn.start[props[order, 2].astype(np.int64)]
    end_f = props[order, 3].astype(np.int64)
    ranked = np.stack([start_f, end_f, rounded32[order]], axis=1).astype(np.float64)
    t = np.float32(duration)
    cand_num = int(cfg["cand_num"])
    top = slice(0, cand_num)  # T11
    starts_s = (start_f[top] / n).astype(np.float32) * t  # T10 (f32)
    ends_s = (end_f[top] / n).astype(np.float32) * t
    conf = rounded32[order][top] / rounded32[order[0]]
    candidates = np.stack([starts_s, ends_s, conf], axis=1).astype(np.float64)  # [C, 3]
    vote_order, votes = iou_vote(candidates, VOTE_GAMMA)  # T12
    final = candidates[vote_order]
    return TagResult(
        spans=final[:, :2].copy(), confidence=final[:, 2].copy(), votes=votes[vote_order],
        candidates=candidates, initial_mask=init, vote_mask=vote, masked_indices=sel, boxcox_lambda=lam,
        adjusted=adjusted, tap=tap.numpy(), init_indices=init_idx, labels=labels, segments=segments,
        proposals=props, sort_order=order, dynamic_start=dyn.start, ranked=ranked,
    )
