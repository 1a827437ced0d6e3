"""Adapter from a zeroground model directory to the ``Grounder``.

Uses the model package's own API (``load_model_dir``, ``predict_spans``) so the
grounder predicts exactly as evaluation does. The query side follows the model:
CLIP-space models take the sentence's CLIP text embedding (made with the
encoder the model directory records); token models take the sentence
simplified by spaCy (``zeroground.pseudo.text.simplify``) and mapped to word ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class TrainedModelError(ValueError):
    """The model directory cannot be used for grounding; the message says why."""


@dataclass
class TrainedModel:
    path: Path
    model: Any
    cfg: Any
    vocab: Any
    device: str = "cpu"
    metadata: dict | None = None

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> "TrainedModel":
        from zeroground.model import ModelDirError, load_model_dir, read_model_config

        path = Path(path)
        if not path.is_dir():
            raise TrainedModelError(
                f"model directory not found: {path} (give a directory written by zeroground's trainer, "
                "or 'training-free')"
            )
        try:
            model, cfg, vocab = load_model_dir(path)
            _, meta = read_model_config(path)
        except ModelDirError as err:
            raise TrainedModelError(str(err)) from None
        model = model.eval().to(device)
        return cls(path, model, cfg, vocab, device, meta)

    @property
    def query_encoder(self) -> str:
        return str(getattr(self.cfg, "query_encoder", "tokens"))

    @property
    def encoder(self) -> str | None:
        """The CLIP encoder recorded in the model directory (config or metadata), if any."""
        meta = self.metadata or {}
        for key in ("encoder", "video_encoder", "features_encoder", "text_encoder"):
            if meta.get(key):
                return str(meta[key])
        return getattr(self.cfg, "text_encoder", None) or None

    def check_video_dim(self, dim: int, encoder: str) -> None:
        want = int(getattr(self.cfg, "video_dim", dim))
        if want != dim:
            raise TrainedModelError(
                f"model {self.path} expects {want}-d video features but encoder {encoder!r} gives {dim}-d: "
                "ground with the encoder the model was trained on (--encoder)"
            )

    def predict(self, features: np.ndarray, duration: float, sentence: str, text_embedding: np.ndarray) -> tuple[float, float]:
        """One span (seconds) for one query on one video's features [T, D]."""
        from zeroground.model import predict_spans

        if self.query_encoder == "clip":
            query: Any = text_embedding[None].astype(np.float32)  # [1, Dc]
        else:
            from zeroground.pseudo.text import simplify

            query = simplify([sentence])  # [[token, ...]]
            if not query[0]:
                raise TrainedModelError(f"query {sentence!r} has no content words after simplification")
        pred = predict_spans(self.model, self.cfg, self.vocab, features, query, device=self.device)
        start, end = (float(x) for x in np.asarray(pred.spans, dtype=np.float64)[0])  # normalised
        start, end = max(0.0, min(1.0, start)), max(0.0, min(1.0, end))
        if end < start:
            start, end = end, start
        return start * duration, end * duration
