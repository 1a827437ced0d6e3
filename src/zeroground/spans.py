"""Span utilities every stage may use: temporal IoU and temporal non-maximum suppression.

A span is ``[start, end]`` in seconds or normalised to the video's length alike (SPEC §5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from zeroground.errors import ZerogroundError


class SpanError(ZerogroundError, ValueError):
    """Spans of the wrong shape, or spans and scores that do not pair up."""


def tiou(pred: np.ndarray | Sequence, gt: np.ndarray | Sequence) -> np.ndarray:
    """Temporal IoU of spans ``[..., 2]`` (broadcast), seconds or normalised alike; SPEC §5."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape[-1:] != (2,) or gt.shape[-1:] != (2,):
        raise SpanError(f"spans must have a last axis of size 2, got {pred.shape} and {gt.shape}")
    ps, pe = pred[..., 0], pred[..., 1]
    gs, ge = gt[..., 0], gt[..., 1]
    inter = np.minimum(pe, ge) - np.maximum(ps, gs)
    union = np.maximum(pe, ge) - np.minimum(ps, gs)
    numer = np.maximum(0.0, inter)
    safe = np.where(union > 0, union, 1.0)
    out = np.where(union > 0, numer / safe, np.where(inter > 0, 1.0, 0.0))
    return out


def temporal_nms(
    spans: np.ndarray | Sequence,
    scores: np.ndarray | Sequence,
    threshold: float = 0.5,
    top_k: int | None = None,
) -> np.ndarray:
    """Greedy temporal non-maximum suppression; returns kept indices, best score first.

    A span is dropped when its tIoU with an already kept span is > ``threshold``.
    """
    s = np.asarray(spans, dtype=np.float64).reshape(-1, 2)  # [K, 2]
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)  # [K]
    if len(s) != len(sc):
        raise SpanError(f"{len(s)} spans but {len(sc)} scores")
    order = np.argsort(-sc, kind="stable")
    keep: list[int] = []
    for i in order:
        if top_k is not None and len(keep) >= top_k:
            break
        if keep and (tiou(s[keep], s[i]) > threshold).any():
            continue
        keep.append(int(i))
    return np.array(keep, dtype=np.int64)
