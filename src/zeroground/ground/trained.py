"""Adapter from a zeroground model directory to the ``Grounder``.

Uses the model package's own API (``load_model_dir``, ``predict_spans``) so the
grounder predicts exactly as evaluation does. The query side follows the model:
CLIP-space models take the sentence's CLIP text embedding (made with the
encoder the model directory records); token models take the sentence
simplified by spaCy (``zeroground.pseudo.text.simplify``) and mapped to word ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zeroground.errors import ZerogroundError


class TrainedModelError(ZerogroundError, ValueError):
    """The model directory cannot be used for grounding; the message says why."""


@dataclass
class TrainedModel:
    path: Path
    model: Any
    cfg: Any
    vocab: Any
    device: str = "cpu"
    metadata: dict | None = None
    _video: Any = None  # (video key, encoded video [1, S, D], mask [1, S]) of the last video
    _tokens: dict = field(default_factory=dict)  # sentence -> simplified token lists

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
        """The CLIP encoder recorded in the model directory's metadata, if any."""
        meta = self.metadata or {}
        for key in ("encoder", "video_encoder", "features_encoder", "text_encoder"):
            if meta.get(key):
                return str(meta[key])
        return None

    @property
    def encoder_record(self) -> dict:
        """The identity of the encoder whose features the model was trained on (metadata)."""
        meta = self.metadata or {}
        return {"encoder": self.encoder, "encoder_fingerprint": meta.get("video_encoder_fingerprint")}

    def check_video_dim(self, dim: int, encoder: str) -> None:
        from zeroground.model import check_feature_dim

        check_feature_dim(dim, self.cfg, where=f"encoder {encoder!r} (model {self.path})",
                          remedy="ground with the encoder the model was trained on (--encoder)")

    def predict(
        self,
        features: np.ndarray,
        duration: float,
        sentence: str,
        text_embedding: np.ndarray,
        video_key: str | None = None,
    ) -> tuple[float, float]:
        """One span (seconds) for one query on one video's features [T, D].

        With ``video_key``, the model's encoding of the video (its video GRU) is
        kept for the next query on the same video: only the fusion runs again.
        """
        if self.query_encoder == "clip":
            query: Any = text_embedding[None].astype(np.float32)  # [1, Dc]
        else:
            from zeroground.pseudo.text import simplify

            if sentence not in self._tokens:  # spaCy costs more than the model: once per sentence
                if len(self._tokens) > 4096:
                    self._tokens.clear()
                self._tokens[sentence] = simplify([sentence])
            query = self._tokens[sentence]  # [[token, ...]]
            if not query[0]:
                raise TrainedModelError(f"query {sentence!r} has no content words after simplification")
        if video_key is not None and hasattr(self.model, "encode_video") and hasattr(self.model, "ground"):
            span = self._predict_cached(features, query, video_key)
        else:
            from zeroground.model import predict_spans

            pred = predict_spans(self.model, self.cfg, self.vocab, features, query, device=self.device)
            span = np.asarray(pred.spans, dtype=np.float64)[0]  # normalised
        start, end = (max(0.0, min(1.0, float(x))) for x in span)
        if end < start:
            start, end = end, start
        return start * duration, end * duration

    def predict_many(self, features: list[np.ndarray], durations: list[float], sentence: str,
                     text_embedding: np.ndarray, batch_size: int = 64) -> list[tuple[float, float]]:
        """One span (seconds) per video for one query, in batched forward passes (library search)."""
        from zeroground.model import predict_spans

        if not features:
            return []
        if self.query_encoder == "clip":
            queries: Any = np.repeat(text_embedding[None].astype(np.float32), len(features), axis=0)  # [C, Dc]
        else:
            from zeroground.pseudo.text import simplify

            if sentence not in self._tokens:
                self._tokens[sentence] = simplify([sentence])
            if not self._tokens[sentence][0]:
                raise TrainedModelError(f"query {sentence!r} has no content words after simplification")
            queries = self._tokens[sentence] * len(features)
        pred = predict_spans(self.model, self.cfg, self.vocab, list(features), queries, device=self.device,
                             batch_size=batch_size)
        out = []
        for span, duration in zip(np.asarray(pred.spans, dtype=np.float64), durations):
            start, end = sorted(max(0.0, min(1.0, float(x))) for x in span)
            out.append((start * duration, end * duration))
        return out

    def _predict_cached(self, features: np.ndarray, query: Any, video_key: str) -> np.ndarray:
        """Same maths as ``predict_spans`` for one video, reusing the encoded video."""
        import torch

        from zeroground.model import check_feature_dim, query_batch, segment_batch

        if self._video is None or self._video[0] != video_key:
            check_feature_dim(features.shape[1], self.cfg, where="video features")
            seg = segment_batch([features], num_segments=self.cfg.num_segments)
            mask = torch.from_numpy(seg.video_mask).to(self.device)  # [1, S]
            with torch.no_grad():
                v = self.model.encode_video(torch.from_numpy(seg.video_feats).to(self.device), mask)  # [1, S, D]
            self._video = (video_key, v, mask)
        _, v, mask = self._video
        q = query_batch(self.cfg, self.vocab, query)
        q.ids = None if q.ids is None else q.ids.to(self.device)
        q.vectors = None if q.vectors is None else q.vectors.to(self.device)
        with torch.no_grad():
            out = self.model.ground(v, mask, q)
        return out["spans"][0].double().cpu().numpy()  # [2] normalised (under the model's readout)
