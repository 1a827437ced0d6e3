"""Multi-window moment-retrieval metrics as QVHighlights / lighthouse report them.

The algorithm of Moment-DETR's ``standalone_eval/eval.py`` (github.com/jayleicn/moment_detr),
written here from its description:

* **R1@t** -- the top-1 window (the first of ``pred_relevant_windows``) against the
  ground-truth window it overlaps most; the share with IoU >= t, for t in 0.5:0.05:0.95.
* **mAP@t** -- per query, ActivityNet-style average precision of the first 10 predicted
  windows (sorted by score, each matched greedily to the unmatched ground-truth window of
  highest IoU >= t), averaged over queries; ``mAP`` averages t = 0.5:0.05:0.95.
* **short / middle / long** -- the same on ground-truth windows of length in (0, 10],
  (10, 30], (30, 150] seconds (queries without such a window are left out).

Values are in percent, rounded to 2 decimals, under the evaluator's names
(``MR-full-R1@0.5``, ``MR-full-mAP``, ``MR-short-mAP``, ...).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zeroground.errors import ZerogroundError

# The evaluator's thresholds: linspace(0.5, 0.95, 10) rounded to 2 decimals, as it rounds them
# (unrounded, the 9th is 0.8999999999999999, which an IoU of 0.8999999999999999 would pass).
IOU_THRESHOLDS = np.round(np.linspace(0.5, 0.95, 10), 2)
MAX_PRED_WINDOWS = 10
LENGTH_RANGES = {"short": (0.0, 10.0), "middle": (10.0, 30.0), "long": (30.0, 150.0), "full": (0.0, 150.0)}


class QVHighlightsError(ZerogroundError, ValueError):
    """A QVHighlights-style prediction file does not fit its ground truth."""


def _key(t: float) -> str:
    return f"{t:.2f}".rstrip("0").rstrip(".") if t != 0.5 else "0.5"


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of windows a [P, 2] with b [G, 2] -> [P, G]."""
    inter = np.clip(np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    p = np.concatenate([[0.0], precision, [0.0]])
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # precision envelope
    idx = np.flatnonzero(r[1:] != r[:-1]) + 1
    return float(np.sum((r[idx] - r[idx - 1]) * p[idx]))


def average_precision(gt: np.ndarray, pred: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AP of one query at every threshold: gt [G, 2], pred [P, 2] with scores [P] -> [10]."""
    ap = np.zeros(len(IOU_THRESHOLDS))
    if len(pred) == 0:
        return ap
    order = np.argsort(-scores, kind="stable")
    pred = pred[order]
    ious = _iou(pred, gt)  # [P, G]
    tp = np.zeros((len(IOU_THRESHOLDS), len(pred)))
    for t_idx, thr in enumerate(IOU_THRESHOLDS):
        taken = np.zeros(len(gt), dtype=bool)
        for i in range(len(pred)):
            for j in np.argsort(ious[i])[::-1]:  # best-overlapping free window first
                if ious[i, j] < thr:
                    break
                if taken[j]:
                    continue
                taken[j] = True
                tp[t_idx, i] = 1
                break
    tp_cum = np.cumsum(tp, axis=1)
    fp_cum = np.cumsum(1 - tp, axis=1)
    recall = tp_cum / len(gt)
    precision = tp_cum / (tp_cum + fp_cum)
    return np.array([_interpolated_ap(precision[t], recall[t]) for t in range(len(IOU_THRESHOLDS))])


def _metrics(preds: dict[Any, list[list[float]]], gts: dict[Any, list[list[float]]]) -> dict[str, dict[str, float]]:
    aps, top1 = [], []
    for qid, windows in gts.items():
        g = np.asarray(windows, dtype=np.float64).reshape(-1, 2)
        p = np.asarray(preds[qid], dtype=np.float64).reshape(-1, 3)
        first = p[:1, :2]
        best = g[int(np.argmax(_iou(first, g)[0]))]
        top1.append(float(_iou(first, best[None])[0, 0]))
        p = p[:MAX_PRED_WINDOWS]
        aps.append(average_precision(g, p[:, :2], p[:, 2]))
    ap = np.mean(aps, axis=0)
    top1 = np.asarray(top1)
    out = {"MR-mAP": {_key(t): round(100 * float(v), 2) for t, v in zip(IOU_THRESHOLDS, ap)},
           "MR-R1": {_key(t): round(100 * float(np.mean(top1 >= t)), 2) for t in IOU_THRESHOLDS}}
    out["MR-mAP"]["average"] = round(100 * float(np.mean(ap)), 2)
    return out


def evaluate_moment_retrieval(preds: dict[Any, list[list[float]]], gts: dict[Any, list[list[float]]]) -> dict[str, float]:
    """Standard metrics from ``preds`` (qid -> [[s, e, score], ...], top-1 first) and ``gts`` (qid -> [[s, e], ...])."""
    missing = [q for q in gts if q not in preds or not preds[q]]
    if missing:
        raise QVHighlightsError(f"no predicted windows for {len(missing)} ground-truth quer(ies), first qid {missing[0]!r}")
    brief: dict[str, float] = {}
    for name, (lo, hi) in LENGTH_RANGES.items():
        if name == "full":
            sub = gts
        else:
            sub = {q: [w for w in ws if lo < w[1] - w[0] <= hi] for q, ws in gts.items()}
            sub = {q: ws for q, ws in sub.items() if ws}
        if not sub:
            continue
        m = _metrics(preds, sub)
        brief[f"MR-{name}-mAP"] = m["MR-mAP"]["average"]
        if name == "full":
            brief["MR-full-mAP@0.5"] = m["MR-mAP"]["0.5"]
            brief["MR-full-mAP@0.75"] = m["MR-mAP"]["0.75"]
            brief["MR-full-R1@0.5"] = m["MR-R1"]["0.5"]
            brief["MR-full-R1@0.7"] = m["MR-R1"]["0.7"]
    order = ["MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "MR-full-mAP@0.5", "MR-full-mAP@0.75",
             "MR-short-mAP", "MR-middle-mAP", "MR-long-mAP"]
    return {k: brief[k] for k in order if k in brief}


def read_qvhighlights_predictions(path: str | Path, moments: Sequence | None = None) -> dict[Any, list[list[float]]]:
    """qid -> [[s, e, score], ...] from a QVHighlights submission (``qid``, ``pred_relevant_windows``),
    or from a zeroground predictions file (``pred`` + ``scores``, matched to ``moments`` by line order)."""
    path = Path(path)
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except FileNotFoundError:
        raise QVHighlightsError(f"{path}: predictions file not found") from None
    out: dict[Any, list[list[float]]] = {}
    for i, line in enumerate(lines):
        where = f"{path}: line {i + 1}"
        try:
            d = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QVHighlightsError(f"{where}: not valid JSON ({exc})") from None
        if "pred_relevant_windows" in d:
            if "qid" not in d:
                raise QVHighlightsError(f"{where}: pred_relevant_windows without a qid")
            wins = d["pred_relevant_windows"]
            if not isinstance(wins, list) or not all(isinstance(w, list) and len(w) == 3 for w in wins):
                raise QVHighlightsError(f"{where}: pred_relevant_windows must be [[start, end, score], ...]")
            out[d["qid"]] = [[float(a), float(b), float(c)] for a, b, c in wins]
        elif "pred" in d:
            if moments is None or len(lines) != len(moments):
                raise QVHighlightsError(
                    f"{path}: zeroground predictions are matched to the annotations by line order: "
                    f"{len(lines)} lines vs {0 if moments is None else len(moments)} queries"
                )
            m = moments[i]
            if d.get("video") != m.video:
                raise QVHighlightsError(f"{where}: video {d.get('video')!r} but query {i + 1} of the annotations is on {m.video!r}")
            scores = d.get("scores") or [float(len(d["pred"]) - r) for r in range(len(d["pred"]))]
            out[m.qid if m.qid is not None else i] = [[float(a), float(b), float(c)] for (a, b), c in zip(d["pred"], scores)]
        else:
            raise QVHighlightsError(f"{where}: neither pred_relevant_windows (QVHighlights) nor pred (zeroground)")
    return out


def score_qvhighlights(predictions: str | Path, moments: Sequence, metrics_path: str | Path | None = None) -> dict[str, float]:
    """Score ``predictions`` against multi-window ``moments``; writes ``metrics.json`` beside the predictions."""
    from zeroground.io import atomic_write_json

    gts = {(m.qid if m.qid is not None else i): (m.windows or [[m.start, m.end]]) for i, m in enumerate(moments)}
    metrics = evaluate_moment_retrieval(read_qvhighlights_predictions(predictions, moments), gts)
    atomic_write_json(metrics_path or Path(predictions).with_name("metrics.json"), metrics)
    return metrics
