"""A straightforward per-window, per-frame TFVTG (SPEC §2-3), written as loops.

Independent of :mod:`zeroground.ground.tfvtg`'s vectorised code: the tests compare the
two on queries with no oracle (another master seed), and benchmarks/training_free_speed.py
times the vectorised rule against it.
"""

from __future__ import annotations

import math

import numpy as np


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
