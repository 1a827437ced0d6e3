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

import dataclasses
import shutil
from pathlib import Path
from typing import Sequence

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
        dropout=cfg.psvl_training.dropout if method == "psvl" else m.dropout,
        clip_dim=video_dim,
        clip_query_len=m.clip_query_len,
        text_encoder=str(clip_path) if method != "psvl" else None,
        span_readout=m.span_readout,
        attention_ratio=cfg.psvl_training.attention_ratio if method == "psvl" else m.attention_ratio,
        word_vectors=str(clip_path) if method == "psvl" and cfg.psvl_training.word_vectors else None,
        freeze_word_vectors=method == "psvl" and cfg.psvl_training.freeze_word_vectors,
    )


def ensemble_size(method: str, cfg) -> int:
    """Members of ``method``'s model: ``psvl_training.ensemble`` for PSVL, ``train.ensemble``
    for the others, for methods in ``train.ensemble_methods``; 1 otherwise."""
    if method not in cfg.train.ensemble_methods:
        return 1
    key = "psvl_training.ensemble" if method == "psvl" else "train.ensemble"
    members = cfg.psvl_training.ensemble if method == "psvl" else cfg.train.ensemble
    if members < 1:
        raise ValueError(f"{key} must be >= 1, found {members}")
    return members


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


def train_demo_model(method: str, train_files: Path | Sequence[Path], features: Path, run_dir: Path, model_dir: Path,
                     cfg, clip_path: Path, *, clip=None, progress: bool = True) -> Path:
    """Train the ``method`` model with ``zeroground.train.train``; copy it to ``model_dir``.

    For a method in ``train.ensemble_methods`` with N = :func:`ensemble_size` > 1 the model is
    N runs of the same recipe with seeds ``train.seed``, ``train.seed + 1``, ...
    (``run_dir/member_<k>``), saved as one ensemble model directory (``zeroground.model.ensemble``).
    Member k trains on ``train_files[k]`` when several are given (bagging: one pseudo-label
    draw per member), else all on the one file."""
    from zeroground.features.store import FeatureStore
    from zeroground.pseudo.label import vectors_path_for
    from zeroground.train.config import DataConfig, OptimConfig, TrainConfig
    from zeroground.train.loop import train

    files = [Path(train_files)] if isinstance(train_files, (str, Path)) else [Path(f) for f in train_files]
    if not files:
        raise ValueError("train_demo_model needs at least one training file")

    def data_config(train_file: Path) -> DataConfig:
        query_vectors = None
        if method == "lfvmr":
            query_vectors = vectors_path_for(train_file)
        elif method == "supervised":
            query_vectors = supervised_query_vectors(train_file, clip, run_dir.parent / "supervised_queries.npy")
        return DataConfig(train_annotations=str(train_file), features=str(features), format="psvl",
                          query_vectors=str(query_vectors) if query_vectors else None)

    tc = cfg.train
    dim = FeatureStore.open(features).dim
    tcfg = TrainConfig(
        model=model_config(method, cfg, dim, clip_path),
        data=data_config(files[0]),
        train=OptimConfig(epochs=cfg.psvl_training.epochs if method == "psvl" else tc.epochs,
                          batch_size=tc.batch_size, drop_last=False,
                          lr=cfg.psvl_training.lr if method == "psvl" else tc.lr, seed=tc.seed,
                          localization_loss_weight=tc.localization_loss_weight,
                          num_threads=tc.num_threads,
                          query_noise="lfvmr" if method == "lfvmr" and tc.noise_level > 0 else "none",
                          query_noise_level=tc.noise_level if method == "lfvmr" else 0.0,
                          word_dropout=cfg.psvl_training.word_dropout if method == "psvl" else 0.0,
                          word_insertion=cfg.psvl_training.word_insertion if method == "psvl" else 0.0,
                          average_last_epochs=cfg.psvl_training.average_last_epochs if method == "psvl" else 0,
                          plot=False),
    )
    if run_dir.exists():  # a fresh run every time: the demo's inputs may have changed
        shutil.rmtree(run_dir)
    members = ensemble_size(method, cfg)
    if len(files) not in (1, members):
        raise ValueError(f"{len(files)} training files for {members} ensemble member(s) of {method}; "
                         "give one file, or one per member")
    if members == 1:
        trained = train(tcfg, run_dir, progress=progress, log=None)
        if model_dir.exists():
            shutil.rmtree(model_dir)
        shutil.copytree(trained, model_dir)
        return model_dir
    from zeroground.model.ensemble import save_ensemble_dir

    trained_members = []
    for k in range(members):
        member_cfg = dataclasses.replace(tcfg, train=dataclasses.replace(tcfg.train, seed=tc.seed + k),
                                         data=data_config(files[k]) if len(files) > 1 else tcfg.data)
        trained_members.append(train(member_cfg, run_dir / f"member_{k}", progress=progress, log=None))
    return save_ensemble_dir(model_dir, trained_members)


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
    (``ModelConfig.span_readout``), everything else as saved."""
    from zeroground.eval.predictions import PredictionRecord
    from zeroground.model import load_model_dir, predict_spans
    from zeroground.train.data import query_tokens

    model, mcfg, vocab = load_model_dir(model_dir)
    mcfg.span_readout = readout
    model.cfg.span_readout = readout
    if mcfg.query_encoder == "tokens":
        queries: object = query_tokens(moments, "test annotations")
    else:
        queries = clip.encode_texts([m.sentence for m in moments])
    spans = predict_spans(model, mcfg, vocab, [store[m.video] for m in moments], queries).spans.astype(np.float64)
    return [PredictionRecord(video=m.video, query=m.sentence, duration=float(m.duration),
                             gt=[float(m.start), float(m.end)], pred=[[s * m.duration, e * m.duration]])
            for m, (s, e) in zip(moments, spans)]
