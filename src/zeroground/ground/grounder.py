"""``Grounder``: encode a video once, then answer any number of queries about it.

The object behind ``zeroground ground`` and the web demo. Encoding a video
(decode + CLIP vision tower) is the slow part, so its features are cached:

* in memory, keyed by (path, size, mtime), so repeated queries in one process
  only embed the sentence and score windows;
* on disk (``cache_dir``, default ``$ZEROGROUND_CACHE`` or
  ``~/.cache/zeroground/features``), keyed by the SHA-256 of the file content,
  the encoder (its name, folder files and weights fingerprint, so a retrained
  folder misses even with the same file sizes and times) and the fps, so a renamed
  copy of a video hits the cache and an edited one misses it. An entry that cannot
  be read or does not fit (shape, dimension, frame count for its duration) is
  recomputed and overwritten.

Models: ``"training-free"`` (the CLIP windows baseline, :mod:`.training_free`),
``"training-free:<rule>"`` for any rule of ``TRAINING_FREE_METHODS`` (``windows``,
``tfvtg``, ``tag``; encoded at 3 frames/s by default, the rate their authors used), or a
model directory trained by zeroground. A trained PSVL-style model regresses
one span; for ``top_k > 1`` the remaining spans come from the training-free
scorer on the same features (after NMS against the model's span), and every
span is reported with the training-free score (mean similarity inside minus
outside) and its source, so ranks 2..k are honest about where they come from.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zeroground.errors import ZerogroundError
from zeroground.ground.training_free import NMS_THRESHOLD, score_windows

TRAINING_FREE = "training-free"
RULE_FPS = 3.0  # TFVTG's feature_extraction.py default; TAG uses the same features


class GroundError(ZerogroundError, ValueError):
    """Grounding cannot run (bad query, model/encoder mismatch, ...); the message says why."""


@dataclass(frozen=True)
class GroundedSpan:
    start: float  # seconds
    end: float  # seconds
    score: float  # training-free score (inside minus outside similarity)
    source: str  # "model" (the trained model's span), "clip" (windows scorer), or the rule: "tfvtg", "tag"


@dataclass
class EncodedVideo:
    key: str  # content hash of the file
    features: np.ndarray  # [T, D] L2-normalised CLIP features
    duration: float  # seconds
    fps: float


def default_cache_dir() -> Path:
    env = os.environ.get("ZEROGROUND_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "zeroground" / "features"


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _encoder_key(name: str) -> str:
    """Identity of an encoder: its name, plus its config and weights' sizes when it is a folder."""
    h = hashlib.sha256(name.encode())
    p = Path(name)
    if p.is_dir():
        for f in sorted(p.iterdir()):
            if f.suffix in (".json", ".safetensors", ".bin", ".txt"):
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


class Grounder:
    """Answers "where in this video does <sentence> happen?" with spans in seconds."""

    def __init__(
        self,
        model: str | Path = TRAINING_FREE,
        encoder: str | None = None,
        *,
        fps: float | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        cache_dir: str | Path | None = None,
        nms_threshold: float = NMS_THRESHOLD,
        setting: str = "charades",
    ) -> None:
        from zeroground.ground.training_free import SETTINGS, TRAINING_FREE_METHODS

        from zeroground.features.encoders import resolve_device

        self.device = device = resolve_device(device)
        self.method = "windows"
        self.setting = setting
        if setting not in SETTINGS:
            raise GroundError(f"unknown training-free setting {setting!r}; known: {', '.join(SETTINGS)}")
        if str(model).startswith(TRAINING_FREE + ":"):
            self.method = str(model).split(":", 1)[1]
            if self.method not in TRAINING_FREE_METHODS:
                raise GroundError(
                    f"unknown training-free rule {self.method!r} in {model!r}; known: "
                    + ", ".join(f"{TRAINING_FREE}:{m}" for m in TRAINING_FREE_METHODS)
                )
            model = TRAINING_FREE
            fps = fps or (RULE_FPS if self.method != "windows" else None)
        self.batch_size = batch_size
        self.nms_threshold = nms_threshold
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._trained: Any = None
        if str(model) != TRAINING_FREE:
            from zeroground.ground.trained import TrainedModel

            self._trained = TrainedModel.load(model, device=device)
            encoder = encoder or self._trained.encoder
            fps = fps or (self._trained.metadata or {}).get("feature_fps")
        # None: the rate the model's training features were extracted at, else 1 frame/s
        self.fps = float(fps or 1.0)
        if not encoder:
            raise GroundError(
                "no encoder: pass --encoder (a folder saved with save_pretrained, or a hub id)"
                + ("" if self._trained is None else f"; the model directory {model} records none")
            )
        self.encoder_name = str(encoder)
        self._clip = None
        self._memo: dict[tuple, EncodedVideo] = {}
        self._text_memo: dict[str, np.ndarray] = {}

    @property
    def clip(self):
        if self._clip is None:
            from zeroground.features.encoders import check_same_encoder, load_encoder

            self._clip = load_encoder(self.encoder_name, device=self.device)
            if self._trained is not None:
                self._trained.check_video_dim(self._clip.dim, self.encoder_name)
                check_same_encoder(self._trained.encoder_record, self._clip.metadata, what="video features",
                                   where=f"encoder {self.encoder_name!r}")
        return self._clip

    # ------------------------------------------------------------------ videos
    def _cache_file(self, key: str) -> Path:
        fps = f"{self.fps:g}".replace(".", "p")
        encoder = f"{_encoder_key(self.encoder_name)}{self.clip.fingerprint}"
        return self.cache_dir / f"{key[:40]}-{encoder}-fps{fps}.npz"

    def _read_cache(self, key: str, cache_file: Path) -> EncodedVideo | None:
        """The cached features, or None when the entry is missing, unreadable or does not fit."""
        import zipfile

        if not cache_file.exists():
            return None
        try:
            with np.load(cache_file, allow_pickle=False) as z:
                feats = np.asarray(z["features"], dtype=np.float32)  # [T, D]
                duration = float(z["duration"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        n = max(1, int(np.floor(duration * self.fps + 0.5))) if np.isfinite(duration) and duration > 0 else -1
        if feats.ndim != 2 or feats.shape != (n, self.clip.dim) or not np.isfinite(feats).all():
            return None
        return EncodedVideo(key, feats, duration, self.fps)

    def encode(self, video: str | Path) -> EncodedVideo:
        """Features of ``video``, from the memory or disk cache when it has been seen."""
        from zeroground.io import atomic_path

        path = Path(video)
        if not path.is_file():
            raise GroundError(f"video not found: {path}")
        st = path.stat()
        memo_key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if memo_key in self._memo:
            return self._memo[memo_key]
        key = file_sha256(path)
        cache_file = self._cache_file(key)
        enc = self._read_cache(key, cache_file)
        if enc is None:  # a miss, or an entry that cannot be trusted: recompute and overwrite
            from zeroground.features.extract import encode_video

            feats, duration = encode_video(self.clip, path, self.fps, self.batch_size)
            enc = EncodedVideo(key, feats, duration, self.fps)
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cache_file) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, features=feats, duration=np.float64(duration))
        self._memo[memo_key] = enc
        return enc

    # ------------------------------------------------------------------ queries
    def embed_query(self, query: str) -> np.ndarray:
        if not isinstance(query, str) or not query.strip():
            raise GroundError("empty query: give a sentence describing the moment")
        if query not in self._text_memo:
            self._text_memo[query] = self.clip.encode_texts([query])[0]  # [D]
        return self._text_memo[query]

    def ground(self, video: str | Path | EncodedVideo, query: str, top_k: int = 5) -> list[GroundedSpan]:
        """Top-``top_k`` spans (seconds) where ``query`` happens in ``video``, best first."""
        if top_k < 1:
            raise GroundError(f"top_k must be >= 1, got {top_k}")
        enc = video if isinstance(video, EncodedVideo) else self.encode(video)
        q = self.embed_query(query)
        if self._trained is None and self.method != "windows":
            from zeroground.ground.training_free import TRAINING_FREE_METHODS

            res = TRAINING_FREE_METHODS[self.method](enc.features, q, enc.duration, self.setting)
            return [GroundedSpan(float(a), float(b), float(s), self.method) for (a, b), s in zip(res.spans, res.scores)][
                :top_k
            ]
        free = score_windows(
            enc.features, q, enc.duration, top_k=top_k + 1, nms_threshold=self.nms_threshold
        )
        if self._trained is None:
            return [GroundedSpan(float(a), float(b), float(s), "clip") for (a, b), s in zip(free.spans, free.scores)][
                :top_k
            ]
        from zeroground.eval.metrics import tiou
        from zeroground.ground.training_free import inside_minus_outside

        start, end = self._trained.predict(enc.features, enc.duration, query, q, video_key=enc.key)
        t = len(enc.features)
        s_idx = min(t - 1, max(0, int(np.floor(start / enc.duration * t))))
        e_idx = min(t, max(s_idx + 1, int(np.ceil(end / enc.duration * t))))
        idx = np.array([[s_idx, e_idx]])  # [1, 2] feature indices covering the model's span
        sim = enc.features @ q  # [T]
        model_score = float(inside_minus_outside(sim, idx)[0])
        spans = [GroundedSpan(float(start), float(end), model_score, "model")]
        for (a, b), s in zip(free.spans, free.scores):
            if len(spans) >= top_k:
                break
            if float(tiou(np.array([a, b]), np.array([start, end]))) > self.nms_threshold:
                continue
            spans.append(GroundedSpan(float(a), float(b), float(s), "clip"))
        return spans


def ground(
    video: str | Path,
    query: str,
    model: str | Path = TRAINING_FREE,
    *,
    encoder: str | None = None,
    top_k: int = 5,
    fps: float | None = None,
    device: str = "cpu",
    cache_dir: str | Path | None = None,
) -> list[GroundedSpan]:
    """One-shot helper: build a :class:`Grounder` and answer one query."""
    g = Grounder(model, encoder, fps=fps, device=device, cache_dir=cache_dir)
    return g.ground(video, query, top_k=top_k)
