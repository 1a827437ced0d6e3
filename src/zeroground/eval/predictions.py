"""The predictions file: JSON Lines, one query per line, in annotation order.

Each line is ``{"video", "query", "duration", "gt": [s, e], "pred": [[s, e], ...], "scores"?}``
with times in seconds and the top-1 prediction first. Any tool can write it, so
``zeroground score`` compares zeroground's models with anyone's baselines on equal terms.
Predicted spans are kept as given (start > end allowed, see :mod:`zeroground.eval.metrics`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zeroground.errors import ZerogroundError
from zeroground.io import atomic_write_text

RECORD_FIELDS = frozenset({"video", "query", "duration", "gt", "pred", "scores"})


class PredictionsError(ZerogroundError, ValueError):
    """A predictions file is malformed; the message names the file and the line."""


@dataclass
class PredictionRecord:
    """One query's ground truth and ranked predictions, in seconds."""

    video: str
    query: str | None
    duration: float
    gt: list[float]
    pred: list[list[float]]
    scores: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "video": self.video,
            "query": self.query,
            "duration": self.duration,
            "gt": [float(x) for x in self.gt],
            "pred": [[float(a), float(b)] for a, b in self.pred],
        }
        if self.scores is not None:
            d["scores"] = [float(x) for x in self.scores]
        return d


def _span(value: Any, where: str, name: str) -> list[float]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in value)
    ):
        raise PredictionsError(f"{where}: {name} must be [start, end] of finite numbers, got {value!r}")
    return [float(value[0]), float(value[1])]


def record_from_dict(d: Any, where: str = "record") -> PredictionRecord:
    """Validate one decoded JSON object into a :class:`PredictionRecord`."""
    if not isinstance(d, dict):
        raise PredictionsError(f"{where}: expected a JSON object, got {type(d).__name__}")
    unknown = set(d) - RECORD_FIELDS
    if unknown:
        raise PredictionsError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(RECORD_FIELDS)}")
    for key in ("video", "duration", "gt", "pred"):
        if key not in d:
            raise PredictionsError(f"{where}: missing field {key!r}")
    duration = d["duration"]
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not (duration > 0) or not math.isfinite(duration):
        raise PredictionsError(f"{where}: duration must be a positive number of seconds, got {duration!r}")
    preds = d["pred"]
    if not isinstance(preds, list) or not preds:
        raise PredictionsError(f"{where}: pred must be a non-empty list of [start, end], got {preds!r}")
    pred = [_span(p, where, f"pred[{i}]") for i, p in enumerate(preds)]
    scores = d.get("scores")
    if scores is not None:
        if not isinstance(scores, list) or len(scores) != len(pred):
            raise PredictionsError(f"{where}: scores must be a list with one number per prediction ({len(pred)})")
        scores = [float(x) for x in scores]
    query = d.get("query")
    if query is not None and not isinstance(query, str):
        raise PredictionsError(f"{where}: query must be a string or null, got {query!r}")
    return PredictionRecord(str(d["video"]), query, float(duration), _span(d["gt"], where, "gt"), pred, scores)


def write_predictions(path: str | Path, records: Iterable[PredictionRecord]) -> Path:
    """Write records as JSON Lines, atomically."""
    lines = [json.dumps(r.to_dict()) for r in records]
    return atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def read_predictions(path: str | Path) -> list[PredictionRecord]:
    """Read and validate a predictions JSON Lines file (blank lines are skipped)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PredictionsError(f"{path}: predictions file not found") from None
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PredictionsError(f"{where}: not valid JSON ({exc})") from None
        records.append(record_from_dict(obj, where))
    if not records:
        raise PredictionsError(f"{path}: no prediction records")
    return records


def metrics_path_for(predictions_path: str | Path) -> Path:
    """``metrics.json`` beside the predictions file."""
    return Path(predictions_path).with_name("metrics.json")


def score(predictions_path: str | Path, metrics_path: str | Path | None = None) -> dict[str, float]:
    """Score a predictions file and write its metrics (fractions in [0, 1]) to ``metrics.json`` beside it."""
    from zeroground.eval.metrics import evaluate_predictions
    from zeroground.io import atomic_write_json

    metrics = evaluate_predictions(read_predictions(predictions_path))
    atomic_write_json(metrics_path or metrics_path_for(predictions_path), metrics)
    return metrics
