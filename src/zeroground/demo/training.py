"""Training and evaluation of the demo's grounding models, through the library's own
trainer (``zeroground.train.train``) and evaluator (``zeroground.train.evaluate``).

Query sides:

- ``psvl``: token queries (the pseudo-label file's noun/verb bags; test sentences
  simplified by spaCy, as at PSVL test time);
- ``lfvmr``: CLIP-space queries — the pseudo-event's own visual vector with
  Lafite noise during training, the sentence's CLIP text embedding at test time;
- ``supervised``: CLIP-space queries from the CLIP text embedding of the *true*
  training captions on their true spans (the upper bound).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np


def model_config(method: str, cfg, video_dim: int, clip_path: Path):
    from zeroground.model.psvl import ModelConfig

    m = cfg.model
    return ModelConfig(
        query_encoder="tokens" if method == "psvl" else "clip",
        video_dim=video_dim,
        num_segments=m.num_segments,
        embed_dim=m.embed_dim,
        query_gru_hidden=m.query_gru_hidden,
        video_gru_hidden=m.video_gru_hidden,
        hidden=m.hidden,
        fusion_layers=m.fusion_layers,
        nonlocal_layers=m.nonlocal_layers,
        nonlocal_heads=m.nonlocal_heads,
        dropout=m.dropout,
        clip_dim=video_dim,
        clip_query_len=m.clip_query_len,
        text_encoder=str(clip_path) if method != "psvl" else None,
    )


def supervised_query_vectors(train_file: Path, clip, out: Path) -> Path:
    """CLIP text embeddings of the true training captions, in file order ([N, D] .npy)."""
    from zeroground.data.annotations import read_psvl_json
    from zeroground.io import atomic_path

    sentences = [m.sentence or "" for m in read_psvl_json(train_file)]
    vectors = clip.encode_texts(sentences).astype(np.float32)  # [N, D]
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, vectors)
    return out


def train_demo_model(method: str, train_file: Path, features: Path, run_dir: Path, model_dir: Path, cfg,
                     clip_path: Path, *, clip=None, progress: bool = True) -> Path:
    """Train the ``method`` model with ``zeroground.train.train``; copy it to ``model_dir``."""
    from zeroground.features.store import FeatureStore
    from zeroground.pseudo.label import vectors_path_for
    from zeroground.train.config import DataConfig, OptimConfig, TrainConfig
    from zeroground.train.loop import train

    tc = cfg.train
    query_vectors = None
    if method == "lfvmr":
        query_vectors = vectors_path_for(train_file)
    elif method == "supervised":
        query_vectors = supervised_query_vectors(train_file, clip, run_dir.parent / "supervised_queries.npy")
    dim = FeatureStore.open(features).dim
    tcfg = TrainConfig(
        model=model_config(method, cfg, dim, clip_path),
        data=DataConfig(train_annotations=str(train_file), features=str(features), format="psvl",
                        query_vectors=str(query_vectors) if query_vectors else None),
        train=OptimConfig(epochs=tc.epochs, batch_size=tc.batch_size, drop_last=False, lr=tc.lr, seed=tc.seed,
                          query_noise="lfvmr" if method == "lfvmr" and tc.noise_level > 0 else "none",
                          query_noise_xi=tc.noise_level if method == "lfvmr" else 0.0, plot=False),
    )
    if run_dir.exists():  # a fresh run every time: the demo's inputs may have changed
        shutil.rmtree(run_dir)
    trained = train(tcfg, run_dir, progress=progress, log=None)
    if model_dir.exists():
        shutil.rmtree(model_dir)
    shutil.copytree(trained, model_dir)
    return model_dir


def predict_demo_model(model_dir: Path, features: Path, test_annotations: Path, out: Path) -> list:
    """Evaluate with ``zeroground.train.evaluate``; return its prediction records."""
    from zeroground.eval.predictions import read_predictions
    from zeroground.train.evaluate import evaluate

    evaluate(model_dir, features, test_annotations, out, format="psvl")
    return read_predictions(out / "predictions.jsonl")
