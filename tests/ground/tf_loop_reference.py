"""Straightforward TFVTG (SPEC §2-3) and TAG (§4) written as loops over windows, frames, rows and pairs.

Independent of :mod:`zeroground.ground.tfvtg`'s vectorised code: the tests compare the
two (and TAG's loops against :mod:`zeroground.ground.tag`) on queries with no oracle (another master seed), and benchmarks/training_free_speed.py
times the vectorised rule against it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from zeroground.ground import tag as tag_mod
from zeroground.ground.tf_common import as_tokens, frame_similarity, iou_vote


def tfvtg_loop(sim: np.ndarray, duration: float, stride: int, max_stride_factor: float, top: int = 10):
    """-> list of (start_s, end_s, static) best first, as the no-LLM TFVTG."""
    c = [float(np.float32(v)) for v in sim]
    n = len(c)
    m = [1.0 if np.float32(v) > np.float32(0.2) else 0.0 for v in c]
    x = [a * b for a, b in zip(c, m)]
    s = min(stride, n // 2)
    max_stride = int(n * max_stride_factor)
    # dynamic start: smoothed derivative scan
    if s < 3:
        taps = [1.0]
    else:
        h = min(s - 2, 3) // 2
        taps = [math.exp(-t * t / 2) / math.sqrt(2 * math.pi) for t in range(-h, h + 1)]
    g = [sum(taps[j] * x[i + j] for j in range(len(taps))) for i in range(n - len(taps) + 1)]
    d = [0.0] * n
    left = len(taps) // 2
    for i in range(1, len(g)):
        d[left + i - 1] = (g[i] - g[i - 1]) * m[left + i - 1]
    start_of = []
    f1 = f2 = f3 = 0.0
    idx = 0
    for i in range(n):
        f3, f2, f1 = f2, f1, d[i]
        if not (3 * f1 > 0.0005 or 2 * f1 + f2 > 0.0005 or f1 + f2 + f3 > 0.0005):
            idx = i
        start_of.append(idx)
    windows = []
    total, count = sum(x), sum(m)
    for length in range(s, min(n + 1, max_stride + 1), s):
        for i in range(n - length + 1):
            inner = sum(x[i:i + length])
            num = sum(m[i:i + length])
            if count - num == 0:
                continue
            windows.append((inner / length - (total - inner) / (count - num), i, i + length))
    windows.sort(key=lambda w: -w[0])  # stable: ties keep generation order
    kept = []
    for w in windows:
        if len(kept) == top:
            break
        if all(max(0, min(w[2], k[2]) - max(w[1], k[1])) / (max(w[2], k[2]) - min(w[1], k[1])) <= 0.3 for k in kept):
            kept.append(w)
    return [(start_of[i] / n * duration, j / n * duration, sc) for sc, i, j in kept]


def _scan_loop(x: np.ndarray, m: np.ndarray, stride: int) -> list[int]:
    from zeroground.ground.tf_common import smoothing_taps

    taps = smoothing_taps(stride).tolist()
    n = len(x)
    g = [sum(taps[j] * float(x[i + j]) for j in range(len(taps))) for i in range(n - len(taps) + 1)]
    d = [0.0] * n
    left = len(taps) // 2
    for i in range(1, len(g)):
        d[left + i - 1] = (g[i] - g[i - 1]) * float(m[left + i - 1])
    out, f1, f2, f3, idx = [], 0.0, 0.0, 0.0, 0
    for i in range(n):
        f3, f2, f1 = f2, f1, d[i]
        if not (3 * f1 > 0.0005 or 2 * f1 + f2 > 0.0005 or f1 + f2 + f3 > 0.0005):
            idx = i
        out.append(idx)
    return out


def tag_loop(video: np.ndarray, text: np.ndarray, duration: float, setting: str = "charades"):
    """TAG with the reference's loops (per frame, per row, per proposal pair) -> top-1 (start, end)."""
    cfg = tag_mod.TAG_SETTINGS[setting]
    v = as_tokens(video)
    n = v.shape[0]
    c, best = frame_similarity(v, text)
    init, _, sel = tag_mod.tag_masks(c)
    a, _ = tag_mod.boxcox_adjust(c[sel], cfg["gamma"])
    feats = tag_mod.temporal_pooling(v, best, sel, 21)
    m = feats.shape[0]
    k = min(9, max(2, m))
    gen = torch.Generator().manual_seed(60)
    cents = feats[[int(torch.randint(0, m, (1,), generator=gen))]]
    for _ in range(1, k):
        d2 = torch.cdist(feats, cents).min(dim=1).values ** 2
        cum = torch.cumsum(d2 / d2.sum(), 0)
        cents = torch.cat([cents, feats[[int(torch.searchsorted(cum, torch.rand(1, generator=gen)))]]])
    labels = torch.zeros(m, dtype=torch.long)
    for _ in range(100):
        dist = torch.cdist(feats, cents)
        smooth = torch.stack([dist[max(0, i - 3):min(m, i + 4)].mean(dim=0) for i in range(m)])
        new = torch.argmin(smooth, dim=1)
        nc = torch.stack([feats[new == j].mean(0) if (new == j).any() else cents[j] for j in range(k)])
        if torch.allclose(cents, nc, atol=1e-4, rtol=1e-5):
            break
        cents, labels = nc, new
    lab = labels.tolist()
    st = [0] + [i for i in range(1, m) if lab[i] != lab[i - 1]] + [m]
    props = []
    a_list = a.tolist()
    for p in range(len(st)):
        for q in range(p + 1, len(st)):
            lo, hi = st[p], st[q]
            if hi - lo > n * cfg["prior"]:
                continue
            inner = sum(a_list[lo:hi])
            length = hi - lo
            score = inner / length if length == m else inner / length - (sum(a_list) - inner) / (m - length)
            props.append((round(score, 4), int(sel[lo]), int(sel[hi]) if hi < m else n))
    props.sort(key=lambda r: -np.float32(r[0]))
    d_start = _scan_loop(c * init, init, min(int(cfg["stride"]), n // 2))
    cand = [(d_start[s] / n * duration, e / n * duration, sc / props[0][0]) for sc, s, e in props[: int(cfg["cand_num"])]]
    order, _ = iou_vote(np.array(cand), 0.6)
    return cand[order[0]][:2]
