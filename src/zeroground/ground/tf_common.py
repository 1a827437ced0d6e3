"""Parts shared by the TFVTG and TAG localizers (``/work/shared/training_free/SPEC.md`` §1, §2, §5).

* :func:`frame_similarity` -- per-frame best-token cosine similarity with the text, for
  ``[N, D]`` frame features (CLIP, what ``zeroground extract`` writes) and ``[N, K, D]``
  token features (BLIP-2 Q-Former style, K = 32, D = 256) alike.
* :func:`dynamic_pass` -- the smoothed-derivative scan whose *start* refines a proposal's
  beginning ("dynamic start"); written without the reference's per-frame Python loop.
* :func:`iou_vote` -- the IoU-weighted vote over candidate spans.

Precision follows the references (float32 where they compute in float32) so that the
oracle recorded from the authors' code is reproduced; ties are broken by original order
(stable sorts), the oracle's convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from zeroground.errors import ZerogroundError

MASK_THRESHOLD = np.float32(0.2)  # both repos' data_configs: frames with c > 0.2 count
DYNAMIC_THRESHOLD = np.float32(0.0005)  # `ths` of the dynamic scan (both repos)
GAUSSIAN_SIGMA = 1.0  # sigma of the (unnormalised) smoothing kernel of the dynamic scan


class TrainingFreeError(ZerogroundError, ValueError):
    """A training-free rule cannot run on this input (too few frames, shape mismatch, ...)."""


def as_tokens(video: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Video features as float32 ``[N, K, D]``; a ``[N, D]`` array becomes ``[N, 1, D]``."""
    v = torch.as_tensor(np.asarray(video) if not isinstance(video, torch.Tensor) else video)
    if v.ndim == 2:
        v = v[:, None, :]
    if v.ndim != 3:
        raise TrainingFreeError(
            f"video features must be [N, D] (frames) or [N, K, D] (tokens per frame), got shape {tuple(v.shape)}"
        )
    if v.shape[0] == 0:
        raise TrainingFreeError("video features have no frames")
    return v.to(torch.float32)


def frame_similarity(video: np.ndarray | torch.Tensor, text: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Best-token cosine similarity ``c`` [N] (f32) and the best token's index ``b`` [N].

    Token vectors and the text are L2-normalised (divided by ``max(|x|, 1e-12)``); ``b``
    is the first index on ties (SPEC §1).
    """
    v = as_tokens(video)  # [N, K, D]
    t = torch.as_tensor(np.asarray(text) if not isinstance(text, torch.Tensor) else text).to(torch.float32).reshape(-1)
    if t.shape[0] != v.shape[2]:
        raise TrainingFreeError(
            f"text feature is {t.shape[0]}-d but video features are {v.shape[2]}-d: "
            "use the text encoder of the model that made the video features"
        )
    vn = torch.nn.functional.normalize(v, dim=-1, eps=1e-12)
    tn = torch.nn.functional.normalize(t, dim=-1, eps=1e-12)
    s = torch.einsum("d,nkd->nk", tn, vn)  # [N, K]
    c, b = s.max(dim=-1)
    return c.numpy().astype(np.float32), b.numpy().astype(np.int64)


def smoothing_taps(stride: int) -> np.ndarray:
    """The dynamic scan's Gaussian taps (not normalised: they sum to 0.883 for 3 taps; SPEC §2.1)."""
    if stride < 3:
        return np.ones(1, dtype=np.float32)
    g = min(stride - 2, 3)
    h = g // 2
    t = np.arange(-h, h + 1, dtype=np.float64)
    return (np.exp(-(t**2) / (2.0 * GAUSSIAN_SIGMA**2)) / (np.sqrt(2.0 * np.pi) * GAUSSIAN_SIGMA)).astype(np.float32)


@dataclass(frozen=True)
class DynamicPass:
    start: np.ndarray  # [N] int64: D[i], the dynamic start of anything starting at frame i
    score: np.ndarray  # [N] float64: the accumulated "dynamic score" A[i] (computed, unused by both rules)


def dynamic_pass(curve: np.ndarray, mask: np.ndarray, stride: int) -> DynamicPass:
    """SPEC §2 on ``curve`` [N] (f32) with 0/1 ``mask`` [N] and effective stride ``stride``.

    The reference scans frame by frame; here the scan's test only looks at the last
    three derivative values, so it is evaluated for all frames at once and the start
    index is a running maximum of the frames where the test fails.
    """
    x = np.asarray(curve, dtype=np.float32)
    n = x.shape[0]
    taps = smoothing_taps(stride)
    p = taps.shape[0]
    if n >= p:
        g = torch.nn.functional.conv1d(torch.from_numpy(x).view(1, 1, n), torch.from_numpy(taps).view(1, 1, p)).view(-1)
        d_valid = torch.diff(g).numpy()  # [N - P]
    else:
        d_valid = np.zeros(0, dtype=np.float32)
    d = np.zeros(n, dtype=np.float32)
    left = (n - d_valid.shape[0]) // 2
    d[left:left + d_valid.shape[0]] = d_valid
    d = d * np.asarray(mask, dtype=np.float32)
    f1 = d
    f2 = np.concatenate([np.zeros(1, np.float32), d[:-1]])  # previous value (0 before the start)
    f3 = np.concatenate([np.zeros(2, np.float32), d[:-2]])[:n]
    c1 = np.float32(3) * f1
    c2 = np.float32(2) * f1 + f2
    c3 = (f1 + f2) + f3
    keep = (c1 > DYNAMIC_THRESHOLD) | (c2 > DYNAMIC_THRESHOLD) | (c3 > DYNAMIC_THRESHOLD)
    idx = np.arange(n)
    last_reset = np.maximum.accumulate(np.where(keep, -1, idx))  # [N]
    gain = np.where(keep, np.maximum(np.maximum(c1, c2), c3), np.float32(0)).astype(np.float64)
    cs = np.cumsum(gain)
    score = cs - np.where(last_reset >= 0, cs[np.maximum(last_reset, 0)], 0.0)
    return DynamicPass(start=np.maximum(last_reset, 0).astype(np.int64), score=score)


def span_iou_matrix(spans: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``spans`` [C, 2] (float64 seconds) -> [C, C]; a zero-length pair gives NaN."""
    s, e = spans[:, 0], spans[:, 1]
    inter = np.maximum(0.0, np.minimum(e[:, None], e[None, :]) - np.maximum(s[:, None], s[None, :]))
    union = np.maximum(e[:, None], e[None, :]) - np.minimum(s[:, None], s[None, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / union


def iou_vote(candidates: np.ndarray, gamma: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """The IoU vote (SPEC §5) over ``candidates`` [C, 3] = ``[start, end, confidence]``.

    ``v_j = sum_i IoU(i, j) ** gamma * max(conf_i, 0)``; returns (order [C], votes [C]),
    ``order`` by vote descending, earlier candidate first on ties, NaN votes last.
    """
    cand = np.asarray(candidates, dtype=np.float64)
    weights = np.clip(cand[:, 2], 0.0, None)
    with np.errstate(invalid="ignore"):
        votes = (span_iou_matrix(cand[:, :2]) ** gamma * weights[:, None]).sum(axis=0)
    key = np.where(np.isnan(votes), np.inf, -votes)
    return np.argsort(key, kind="stable"), votes
