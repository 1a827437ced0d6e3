"""``zeroground evaluate``: a model directory on a test set → predictions.jsonl + metrics.json.

Spans in seconds are the model's normalised output × duration, not clamped and not
reordered, so the reference's outputs are reproduced as they are. Metrics are the
per-query means of ``zeroground.eval`` (the standard; SPEC §5).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zeroground.io import atomic_write_json
from zeroground.train.data import TrainingDataError, moment_queries, open_features_for


def evaluate(model: str | Path, features: str | Path, annotations: str | Path, out: str | Path,
             format: str = "auto", durations: str | Path | None = None, text_encoder: str | None = None,
             batch_size: int = 256, progress: bool = False, query_vectors: str | Path | None = None) -> dict[str, float]:
    """Predict one span per query, write RUN_DIR/predictions.jsonl and RUN_DIR/metrics.json.

    A CLIP-query model (the seed LFVMR, ``lfvmr_psvlnet``) embeds the sentences with
    ``text_encoder`` (default: the one its model directory records), or reads precomputed
    text vectors ``query_vectors`` (an ``.npy`` ``[N, Dc]``, one row per query in annotation
    order: the seed's test-time input)."""
    from zeroground.data.annotations import read_annotations
    from zeroground.eval.metrics import evaluate_predictions
    from zeroground.eval.predictions import PredictionRecord, write_predictions
    from zeroground.features.store import FeatureStore
    from zeroground.model.model_dir import load_model_dir, read_model_config
    from zeroground.model.predict import check_feature_dim, predict_spans

    from zeroground.features.encoders import check_same_encoder

    cfg, meta = read_model_config(model)
    store = FeatureStore.open(features)
    check_same_encoder({"encoder": meta.get("video_encoder"), "encoder_fingerprint": meta.get("video_encoder_fingerprint")},
                       dict(store.attrs), what="features", where=str(features))
    # before loading weights, reading annotations or any feature
    check_feature_dim(store.dim, cfg, where=f"{features} (model {model})",
                      remedy="evaluate with features from the encoder the model was trained on")
    moments = read_annotations(annotations, format=format, durations=durations)
    if not moments:
        raise TrainingDataError(f"{annotations}: no annotations to evaluate")
    store = open_features_for(features, cfg, [m.video for m in moments])
    net, cfg, vocab = load_model_dir(model)

    encoder = text_encoder or meta.get("text_encoder")
    if query_vectors is not None:
        queries: Any = read_query_vectors(query_vectors, len(moments), cfg, str(annotations))
        encoder = None
    else:
        if cfg.query_encoder != "tokens" and not encoder:
            raise TrainingDataError(f"{model}: clip-query model without a recorded text encoder; "
                                    "pass --encoder, or --query-vectors TEXT.npy")
        queries = moment_queries(moments, cfg.query_encoder, str(annotations), encoder)

    cache: dict[str, np.ndarray] = {}

    def video(vid: str) -> np.ndarray:
        if vid not in cache:
            cache[vid] = store[vid]
        return cache[vid]

    from tqdm.auto import tqdm

    spans = np.zeros((len(moments), 2), dtype=np.float32)
    for a in tqdm(range(0, len(moments), batch_size), desc="evaluating", unit="batch", disable=not progress):
        b = min(len(moments), a + batch_size)
        q = queries[a:b]
        pred = predict_spans(net, cfg, vocab, [video(m.video) for m in moments[a:b]], q, batch_size=batch_size)
        spans[a:b] = pred.spans
    records = []
    for m, (s, e) in zip(moments, spans.astype(np.float64)):
        records.append(PredictionRecord(
            video=m.video, query=m.sentence if m.sentence is not None else " ".join(m.tokens or []),
            duration=m.duration, gt=[m.start, m.end], pred=[[s * m.duration, e * m.duration]],
        ))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(out / "predictions.jsonl", records)
    metrics = evaluate_predictions(records)
    atomic_write_json(out / "metrics.json", metrics)
    atomic_write_json(out / "evaluate_run.json", {
        "model": str(model), "features": str(features), "annotations": str(annotations), "format": format,
        "queries": len(records), "architecture": cfg.architecture, "query_encoder": cfg.query_encoder,
        "text_encoder": encoder if cfg.query_encoder == "clip" else None,
        "query_vectors": None if query_vectors is None else str(query_vectors),
    })
    return metrics


def read_query_vectors(path: str | Path, expected: int, cfg: Any, where: str) -> np.ndarray:
    """Precomputed query vectors ``[N, Dc]`` float32 for a CLIP-query model, checked: one row
    per query of ``where`` (annotation order), the model's width, no all-zero row."""
    path = Path(path)
    if cfg.query_encoder == "tokens":
        raise TrainingDataError(f"--query-vectors: this model reads word tokens, not vectors ({path})")
    if not path.is_file():
        raise TrainingDataError(f"query vectors not found: {path}")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise TrainingDataError(f"{path}: cannot read as an .npy array: {exc}") from exc
    if arr.ndim != 2 or arr.shape[1] != cfg.clip_dim:
        raise TrainingDataError(f"{path}: query vectors have shape {list(arr.shape)}; the model reads "
                                f"[N, {cfg.clip_dim}] (model.clip_dim)")
    if arr.shape[0] != expected:
        raise TrainingDataError(f"{path}: {arr.shape[0]} query vectors for {expected} queries in {where} "
                                "(one row per query, in annotation order)")
    zero = np.flatnonzero(~np.any(arr != 0, axis=1))
    if len(zero):
        raise TrainingDataError(f"{path}: row {int(zero[0])} is all zeros (no direction to ground)")
    return np.ascontiguousarray(arr, dtype=np.float32)


def format_metric_table(metrics: dict[str, float]) -> str:
    """Plain-text table, percentages."""
    keys = list(metrics)
    head = " ".join(f"{k:>8}" for k in keys)
    row = " ".join(f"{100 * metrics[k]:8.2f}" for k in keys)
    return head + "\n" + row


__all__ = ["evaluate", "format_metric_table"]
