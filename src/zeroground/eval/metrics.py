"""The standard video-grounding metrics: tIoU, R@k at IoU thresholds, mIoU, temporal NMS.

tIoU follows the PSVL specification (``shared/psvl/SPEC.md`` §5)::

    tIoU(p, g) = max(0, min(p_e, g_e) - max(p_s, g_s)) / (max(p_e, g_e) - min(p_s, g_s))

and a denominator <= 0 gives 1 if the intersection is positive, else 0. Spans are used
**as given, never reordered**: PSVL's model does not order its two outputs, and a
prediction with start > end must score what the published evaluation scores. Such a span
has a non-positive intersection with anything, so it scores 0. (The denominator can be
negative only then; the result is always in [0, 1].)

Recall and mIoU are per-query means (the standard); PSVL's reference code averages per
test batch instead (a quirk, SPEC §5), which zeroground does not reproduce.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from zeroground.spans import temporal_nms, tiou  # noqa: F401 - part of this module's API
from zeroground.spans import SpanError

IOU_THRESHOLDS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7)
RECALL_KS: tuple[int, ...] = (1, 5)


def _as_topk(preds: np.ndarray | Sequence) -> np.ndarray:
    arr = np.asarray(preds, dtype=np.float64)
    if arr.ndim == 2:  # [N, 2]: one prediction per query
        arr = arr[:, None, :]
    if arr.ndim != 3 or arr.shape[-1] != 2:
        raise SpanError(f"predictions must be [N, K, 2] or [N, 2], got shape {arr.shape}")
    return arr  # [N, K, 2]


def recall_at_iou(preds: np.ndarray | Sequence, gts: np.ndarray | Sequence, iou: float, k: int = 1) -> float:
    """Fraction of queries where one of the top-``k`` predictions has tIoU >= ``iou``.

    ``preds`` is ``[N, K, 2]`` (top-1 first) or ``[N, 2]``; ``gts`` is ``[N, 2]``.
    """
    p = _as_topk(preds)
    g = np.asarray(gts, dtype=np.float64)
    if g.shape != (p.shape[0], 2):
        raise SpanError(f"ground truth must be [N, 2] with N={p.shape[0]}, got {g.shape}")
    if p.shape[1] < k:
        raise SpanError(f"R@{k} needs at least {k} predictions per query, got {p.shape[1]}")
    if p.shape[0] == 0:
        raise SpanError("no queries to score")
    best = tiou(p[:, :k, :], g[:, None, :]).max(axis=1)  # [N]
    return float((best >= iou).mean())


def mean_iou(preds: np.ndarray | Sequence, gts: np.ndarray | Sequence) -> float:
    """Mean over queries of the top-1 prediction's tIoU."""
    p = _as_topk(preds)
    g = np.asarray(gts, dtype=np.float64)
    return float(tiou(p[:, 0, :], g).mean())


def metric_table(preds_topk: np.ndarray | Sequence, gts: np.ndarray | Sequence) -> dict[str, float]:
    """``R1@m`` (and ``R5@m`` when K >= 5) for m in 0.1/0.3/0.5/0.7, plus ``mIoU``; values in [0, 1]."""
    p = _as_topk(preds_topk)
    out: dict[str, float] = {}
    for k in RECALL_KS:
        if p.shape[1] < k:
            continue
        for m in IOU_THRESHOLDS:
            out[f"R{k}@{m}"] = recall_at_iou(p, gts, m, k)
    out["mIoU"] = mean_iou(p, gts)
    return out


def evaluate_predictions(records: Sequence) -> dict[str, float]:
    """Score :class:`~zeroground.eval.predictions.PredictionRecord` s: keys ``R1@0.1`` .. ``R1@0.7``,
    ``R5@..`` (only when every record has >= 5 predictions) and ``mIoU``; fractions in [0, 1].

    Spans are normalised by each record's duration first (SPEC §5 computes on normalised
    spans; the value is the same up to rounding).
    """
    if len(records) == 0:
        raise SpanError("no prediction records to score")
    k = min(len(r.pred) for r in records)
    k = 5 if k >= 5 else 1
    preds = np.array([[list(s) for s in r.pred[:k]] for r in records], dtype=np.float64)  # [N, k, 2]
    gts = np.array([list(r.gt) for r in records], dtype=np.float64)  # [N, 2]
    dur = np.array([r.duration for r in records], dtype=np.float64)  # [N]
    return metric_table(preds / dur[:, None, None], gts / dur[:, None])
