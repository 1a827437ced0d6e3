"""Evaluation: the standard metrics, the predictions file, and the no-training baselines."""

from zeroground.eval.baselines import PREDICTORS, baseline
from zeroground.eval.metrics import (
    IOU_THRESHOLDS,
    evaluate_predictions,
    mean_iou,
    metric_table,
    recall_at_iou,
    temporal_nms,
    tiou,
)
from zeroground.eval.predictions import (
    PredictionRecord,
    PredictionsError,
    read_predictions,
    score,
    write_predictions,
)

__all__ = [
    "IOU_THRESHOLDS",
    "PREDICTORS",
    "PredictionRecord",
    "PredictionsError",
    "baseline",
    "evaluate_predictions",
    "mean_iou",
    "metric_table",
    "read_predictions",
    "recall_at_iou",
    "score",
    "temporal_nms",
    "tiou",
    "write_predictions",
]
