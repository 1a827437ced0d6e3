"""Evaluation of the demo's trained rows: the library's evaluator (``zeroground.train.evaluate``)
and, as a diagnostic row, the same model read out with its other span read-out."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def predict_demo_model(model_dir: Path, features: Path, test_annotations: Path, out: Path) -> list:
    """Evaluate with ``zeroground.train.evaluate``; return its prediction records."""
    from zeroground.eval.predictions import read_predictions
    from zeroground.train.evaluate import evaluate

    evaluate(model_dir, features, test_annotations, out, format="psvl")
    return read_predictions(out / "predictions.jsonl")


def attention_spans(attention: np.ndarray, video_mask: np.ndarray, ratio: float = 1 / 3) -> np.ndarray:
    """``zeroground.model.attention_spans`` on numpy arrays → [N, 2] normalised spans."""
    import torch

    from zeroground.model import attention_spans as model_attention_spans

    return model_attention_spans(torch.as_tensor(np.asarray(attention, dtype=np.float64)),
                                 torch.as_tensor(np.asarray(video_mask, dtype=bool)), ratio).numpy()


def other_readout(readout: str) -> str:
    return "regression" if readout == "attention" else "attention"


def predict_with_readout(model_dir: Path, store, moments, clip, readout: str) -> list:
    """Prediction records of a trained model with its span read-out set to ``readout``
    (``Readout.span``), everything else (the attention ratio included) as saved."""
    import dataclasses

    from zeroground.eval.predictions import PredictionRecord
    from zeroground.model import load_model_dir, predict_spans
    from zeroground.train.data import moment_queries

    model, mcfg, vocab = load_model_dir(model_dir)
    model.readout = dataclasses.replace(model.readout, span=readout)
    queries = moment_queries(moments, mcfg.query_encoder, "test annotations", clip)
    spans = predict_spans(model, mcfg, vocab, [store[m.video] for m in moments], queries).spans.astype(np.float64)
    return [PredictionRecord(video=m.video, query=m.sentence, duration=float(m.duration),
                             gt=[float(m.start), float(m.end)], pred=[[s * m.duration, e * m.duration]])
            for m, (s, e) in zip(moments, spans)]
