"""``zeroground train``: the PSVL objective (SPEC §4) with atomic per-epoch checkpoints.

Determinism and resume: the model is initialised after ``torch.manual_seed(seed)``;
each epoch's shuffle, segment offsets and query noise come from generators seeded by
(seed, epoch), and the global torch RNG (dropout) is saved in the checkpoint. A run
killed at any point and resumed from its last checkpoint therefore replays the
interrupted epoch exactly and ends with the same weights as an uninterrupted run.

RUN_DIR holds: config.yaml (resolved), checkpoint.pt (model, optimizer, RNG, epoch,
history, and the running weight sum of ``train.average_last_epochs``), metrics.csv,
training.png, and at the end model/ (a model directory). There is no model selection:
the final epoch's weights -- or their mean over the last k epochs -- are the result. An
optional validation set is evaluated for the log only.
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from zeroground.config import from_dict, save_config
from zeroground.io import atomic_path, atomic_write_text
from zeroground.model.model_dir import save_model_dir
from zeroground.model.predict import check_feature_dim
from zeroground.model.preprocess import PAD, UNK, build_vocab
from zeroground.model.architectures import build_model
from zeroground.model.psvl import GroundingModel, QueryBatch, grounding_loss
from zeroground.train.config import TrainConfig
from zeroground.train.noise import QUERY_NOISE
from zeroground.train.data import (
    GroundingData,
    TrainingDataError,
    build_grounding_data,
    make_batch,
    moment_queries,
    open_features_for,
    open_query_features_for,
    query_tokens,
)

CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.csv"
PLOT_FILE = "training.png"
DONE_FILE = "DONE"  # written (by train_member / sweep runs) after a run's model directory is complete


class TrainingInterrupted(RuntimeError):
    """Raised by the ``stop_after_steps`` hook: simulates a kill in the middle of a run."""


def drop_words(ids: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Word ids ``[B, L]`` with each real word (id > UNK; not padding or <UNK>) replaced by
    <UNK> with probability ``p`` (``train.word_dropout``); a new tensor."""
    hit = (torch.rand(ids.shape, generator=generator) < p) & (ids > UNK)
    return ids.masked_fill(hit, UNK)


def insert_unknown_words(ids: torch.Tensor, p: float, generator: torch.Generator | None = None,
                         max_inserts: int = 2) -> torch.Tensor:
    """Word ids ``[B, L]`` (0-padded on the right) where each row gets up to ``max_inserts``
    <UNK> (1) words, each with probability ``p``, at uniformly drawn positions among its
    words (``train.word_insertion``); rows already ``L`` long stay as they are. A new tensor."""
    out = ids.clone()
    length = ids.shape[1]
    draws = torch.rand((ids.shape[0], max_inserts, 2), generator=generator)
    for b in range(ids.shape[0]):
        row = [int(t) for t in out[b] if int(t) != PAD]
        for j in range(max_inserts):
            if draws[b, j, 0] < p and len(row) < length:
                at = min(int(draws[b, j, 1] * (len(row) + 1)), len(row))
                row.insert(at, UNK)
        out[b] = PAD
        out[b, :len(row)] = torch.tensor(row, dtype=ids.dtype)
    return out


def _init_word_vectors(model: GroundingModel, vocab: dict[str, int], tc, log) -> None:
    """``train.word_vectors``: word embeddings from a CLIP text encoder (zeroground.model.word_vectors)."""
    from zeroground.features.clip import load_clip
    from zeroground.model.word_vectors import WordVectorError, init_word_vectors

    try:
        n = init_word_vectors(model.query_encoder.embedding, vocab, load_clip(tc.word_vectors).encode_texts,
                              prompt=tc.word_vector_prompt, freeze=tc.freeze_word_vectors)
    except WordVectorError as exc:
        raise TrainingDataError(f"train.word_vectors {tc.word_vectors}: {exc}") from None
    if log:
        log(f"word embeddings of {n} words initialised from {tc.word_vectors}"
            + (" (frozen)" if tc.freeze_word_vectors else ""))


def _read_moments(path: str, fmt: str, durations: str | None) -> list:
    from zeroground.data.annotations import read_annotations

    return read_annotations(path, format=fmt, durations=durations)


def prepare_training(cfg: TrainConfig) -> tuple[TrainConfig, GroundingData, dict[str, int] | None]:
    """Read and check every input (dims first), fix data-dependent sizes in the config."""
    d, m = cfg.data, cfg.model
    if cfg.train.word_vectors and cfg.model.query_encoder != "tokens":
        raise TrainingDataError(f"train.word_vectors initialises word embeddings, which only a token-query model has; "
                                f"this model has query_encoder {cfg.model.query_encoder!r}: set train.word_vectors to null")
    if not 0.0 <= cfg.train.word_dropout < 1.0:
        raise TrainingDataError(f"train.word_dropout must be in [0, 1), found {cfg.train.word_dropout}")
    if not 0.0 <= cfg.train.word_insertion <= 1.0:
        raise TrainingDataError(f"train.word_insertion must be in [0, 1], found {cfg.train.word_insertion}")
    if not 0 <= cfg.train.average_last_epochs <= cfg.train.epochs:
        raise TrainingDataError(f"train.average_last_epochs must be between 0 and train.epochs "
                                f"({cfg.train.epochs}), found {cfg.train.average_last_epochs}")
    if cfg.train.query_noise not in QUERY_NOISE:
        raise TrainingDataError(f"unknown train.query_noise {cfg.train.query_noise!r}; choose one of {sorted(QUERY_NOISE)}")
    from zeroground.features.store import FeatureStore

    if not Path(d.video_features).exists():
        raise TrainingDataError(f"feature store not found: {d.video_features} (set data.video_features)")
    store_dim = FeatureStore.open(d.video_features).dim
    check_feature_dim(store_dim, m, where=d.video_features,
                      remedy=f"set model.video_dim: {store_dim} or use other features")
    if not Path(d.train_annotations).exists():
        raise TrainingDataError(f"annotation file not found: {d.train_annotations} (set data.train_annotations)")
    moments = _read_moments(d.train_annotations, d.format, d.durations)
    if not moments:
        raise TrainingDataError(f"{d.train_annotations}: no annotations")
    store = open_features_for(d.video_features, m, [x.video for x in moments])
    vocab = None
    vectors = None
    query_store = None
    if m.query_encoder == "tokens":
        vocab = build_vocab(query_tokens(moments, d.train_annotations))
        m.vocab_size = len(vocab)
    elif m.architecture == "lfvmr":  # queries: candidate CLIP frames drawn each epoch (SPEC §3)
        query_store = open_query_features_for(d.query_features or d.video_features, m, [x.video for x in moments])
    else:
        if not d.query_vectors:
            raise TrainingDataError("model.query_encoder is 'clip': set data.query_vectors (an .npy of [N, Dc])")
        vectors = np.load(d.query_vectors).astype(np.float32)
        if vectors.ndim == 2:
            m.clip_dim = int(vectors.shape[1])
    data = build_grounding_data(moments, store, m, vocab, vectors, d.train_annotations, d.preload_features,
                                query_store=query_store)
    return cfg, data, vocab


def _prepare_validation(cfg: TrainConfig, vocab: dict[str, int] | None):
    d, m = cfg.data, cfg.model
    if not d.val_annotations:
        return None
    moments = _read_moments(d.val_annotations, d.val_format, d.val_durations)
    store = open_features_for(d.val_features or d.video_features, m, [x.video for x in moments])
    vectors = None
    if m.query_encoder == "clip":
        if not cfg.train.text_encoder:
            raise TrainingDataError("validation of a clip-query model needs train.text_encoder (CLIP path/name)")
        vectors = moment_queries(moments, m.query_encoder, d.val_annotations, cfg.train.text_encoder)
    return build_grounding_data(moments, store, m, vocab, vectors, d.val_annotations, preload=True)


@torch.no_grad()
def validate(model: GroundingModel, data: GroundingData, cfg: TrainConfig) -> dict[str, float]:
    """R1@{0.1..0.7} and mIoU on normalised spans (per-query means)."""
    from zeroground.eval.metrics import metric_table

    model.eval()
    preds = np.zeros((len(data), 2), dtype=np.float64)
    bs = cfg.train.val_batch_size
    for a in range(0, len(data), bs):
        idx = np.arange(a, min(len(data), a + bs))
        b = make_batch(data, idx, cfg.model, rng=None)
        preds[idx] = model(b.video_feats, b.video_mask, b.query)["spans"].double().numpy()
    return {f"val_{k}": v for k, v in metric_table(preds, data.spans).items()}


def _write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    for row in history:
        writer.writerow(row)
    atomic_write_text(out / METRICS_FILE, buf.getvalue())


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    """Loss curves (left) and validation metrics if any (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    val_keys = [k for k in history[-1] if k.startswith("val_")] if history else []
    fig, axes = plt.subplots(1, 2 if val_keys else 1, figsize=(10 if val_keys else 5, 3.5), squeeze=False)
    ax = axes[0, 0]
    for key in ("loss", "localization_loss", "attention_loss"):
        ax.plot(epochs, [r[key] for r in history], label=key)
    ax.set_xlabel("epoch"); ax.set_ylabel("training loss"); ax.legend(); ax.grid(alpha=0.3)
    if val_keys:
        ax = axes[0, 1]
        for key in val_keys:
            ax.plot(epochs, [r.get(key, float("nan")) for r in history], label=key[4:])
        ax.set_xlabel("epoch"); ax.set_ylabel("validation (log only)"); ax.legend(); ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _save_checkpoint(out: Path, model: GroundingModel, opt: torch.optim.Optimizer, epoch: int,
                     history: list[dict[str, Any]], vocab: dict[str, int] | None,
                     average: dict[str, Any] | None = None) -> None:
    state = {
        "model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
        "torch_rng": torch.get_rng_state(), "history": history, "vocab": vocab,
    }
    if average is not None:
        state["weight_average"] = average
    with atomic_path(out / CHECKPOINT_FILE) as tmp:
        torch.save(state, tmp)


def accumulate_weights(average: dict[str, Any] | None, model: GroundingModel) -> dict[str, Any]:
    """Add the model's current weights (parameters and float buffers) to a running sum.

    BatchNorm's running statistics are averaged like the weights rather than re-estimated
    with a pass over the data (as SWA proper does): at the small learning rates of the last
    epochs the statistics barely move, and one pass more would cost an epoch."""
    current = {k: v.detach().clone().double() if v.is_floating_point() else v.detach().clone()
               for k, v in model.state_dict().items()}
    if average is None:
        return {"count": 1, "sum": current}
    for k, v in current.items():
        if v.is_floating_point():
            average["sum"][k] += v
        else:  # integer buffers (BatchNorm's num_batches_tracked): keep the latest
            average["sum"][k] = v
    average["count"] += 1
    return average


def averaged_weights(average: dict[str, Any]) -> dict[str, torch.Tensor]:
    n = average["count"]
    return {k: (v / n).float() if v.is_floating_point() else v for k, v in average["sum"].items()}


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, *, stop_after_steps: int | None = None,
          progress: bool = True, log: Callable[[str], None] | None = print, distributed: Any = None) -> Path:
    """Train, checkpointing every epoch; returns RUN_DIR/model.

    ``resume``: continue from RUN_DIR/checkpoint.pt with RUN_DIR/config.yaml.
    ``stop_after_steps``: raise TrainingInterrupted after that many optimiser steps (tests).
    ``distributed``: a :class:`zeroground.train.ddp.DistContext` -- DDP over its ranks
    (see :mod:`zeroground.train.ddp`); rank 0 writes every file.
    """
    ctx = distributed
    main = ctx is None or ctx.is_main
    if not main:
        log, progress = None, False
    out = Path(out)
    ckpt_path = out / CHECKPOINT_FILE
    if resume:
        if not ckpt_path.is_file():
            raise TrainingDataError(f"cannot resume: {ckpt_path} does not exist")
        import yaml

        cfg = from_dict(TrainConfig, yaml.safe_load((out / "config.yaml").read_text()), where=str(out / "config.yaml"))
    elif ckpt_path.exists() and main:
        raise TrainingDataError(f"{out} already holds a training run: pass --resume {out} to continue it, or pick a new --out")
    tc = cfg.train
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)

    cfg, data, vocab = prepare_training(cfg)
    val_data = _prepare_validation(cfg, vocab)
    n = len(data)
    steps_per_epoch = n // tc.batch_size if tc.drop_last else math.ceil(n / tc.batch_size)
    if steps_per_epoch == 0:
        raise TrainingDataError(
            f"{n} training samples are fewer than one batch of {tc.batch_size} with drop_last; lower train.batch_size"
        )
    if ctx is not None and steps_per_epoch * tc.batch_size < n and n % tc.batch_size < ctx.world_size:
        raise TrainingDataError(f"the last batch of each epoch has {n % tc.batch_size} sample(s), fewer than the "
                                f"{ctx.world_size} ranks; set train.drop_last: true or another train.batch_size")
    if main:
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            save_config(cfg, out / "config.yaml")

    torch.manual_seed(tc.seed)
    model = build_model(cfg.model)
    model.readout = cfg.readout  # the spans of validation, and of the saved model directory
    if tc.word_vectors:
        if not resume:  # a resumed run's embedding comes from its checkpoint
            _init_word_vectors(model, vocab, tc, log)
        elif tc.freeze_word_vectors:  # same trainable parameters as the first run
            model.query_encoder.embedding.weight.requires_grad_(False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=tc.lr, betas=tuple(tc.betas),
                           weight_decay=tc.weight_decay)
    net = model  # the module itself; ``model`` is what the step calls (DDP wrapper or the module)
    if ctx is not None:
        from zeroground.train.ddp import wrap_model

        model = wrap_model(net, ctx)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    average: dict[str, Any] | None = None  # {"count": k, "sum": state dict}: train.average_last_epochs
    if resume:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        average = state.get("weight_average")
        if log:
            log(f"resuming {out} after epoch {start_epoch}/{tc.epochs}")
    noise = QUERY_NOISE[tc.query_noise]

    from tqdm.auto import tqdm

    steps_done = 0
    bar = tqdm(range(start_epoch, tc.epochs), desc="training", unit="epoch", disable=not progress,
               initial=start_epoch, total=tc.epochs)
    for epoch in bar:
        rng = np.random.default_rng([tc.seed, epoch])  # shuffle + segment offsets of this epoch
        noise_gen = torch.Generator().manual_seed(tc.seed * 1_000_003 + epoch)
        perm = rng.permutation(n)
        model.train()
        sums = {"loss": 0.0, "localization_loss": 0.0, "attention_loss": 0.0}
        t0 = time.perf_counter()
        for step in range(steps_per_epoch):
            idx = perm[step * tc.batch_size:(step + 1) * tc.batch_size]
            batch = make_batch(data, idx, cfg.model, rng)
            query = batch.query
            if noise is not None and query.vectors is not None:
                query = QueryBatch(vectors=noise(query.vectors, tc.query_noise_level, noise_gen))
            if tc.word_dropout > 0 and query.ids is not None:
                query = QueryBatch(ids=drop_words(query.ids, tc.word_dropout, noise_gen))
            if tc.word_insertion > 0 and query.ids is not None:
                query = QueryBatch(ids=insert_unknown_words(query.ids, tc.word_insertion, noise_gen))
            scale = 1.0
            if ctx is not None:  # this rank's rows of the global batch (see zeroground.train.ddp)
                rows = torch.from_numpy(ctx.rows(len(idx)))
                scale = ctx.loss_scale(len(idx))
                query = QueryBatch(ids=None if query.ids is None else query.ids[rows],
                                   vectors=None if query.vectors is None else query.vectors[rows])
                batch = type(batch)(batch.video_feats[rows], batch.video_mask[rows], query, batch.start[rows],
                                    batch.end[rows], batch.guidance[rows])
            outputs = model(batch.video_feats, batch.video_mask, query)
            losses = grounding_loss(outputs, batch.start, batch.end, batch.guidance, tc.localization_loss_weight)
            opt.zero_grad(set_to_none=True)
            (losses["loss"] * scale if scale != 1.0 else losses["loss"]).backward()
            opt.step()
            step_losses = [float(losses[k].detach()) for k in sums]
            if ctx is not None:  # global batch means, for the log
                step_losses = [v / ctx.world_size for v in ctx.sum([x * scale for x in step_losses])]
            for k, v in zip(sums, step_losses):
                sums[k] += v
            steps_done += 1
            if stop_after_steps is not None and steps_done >= stop_after_steps:
                raise TrainingInterrupted(f"stopped after {steps_done} steps (epoch {epoch}, step {step})")
        seconds = time.perf_counter() - t0
        row: dict[str, Any] = {"epoch": epoch + 1}
        row.update({k: v / steps_per_epoch for k, v in sums.items()})
        row.update(seconds=round(seconds, 3), samples_per_s=round(steps_per_epoch * tc.batch_size / seconds, 2))
        if val_data is not None and ((epoch + 1) % tc.val_every == 0 or epoch + 1 == tc.epochs):
            row.update(validate(net, val_data, cfg))
        history.append(row)
        if tc.average_last_epochs > 0 and epoch + 1 > tc.epochs - tc.average_last_epochs:
            average = accumulate_weights(average, net)
        if main:
            _save_checkpoint(out, net, opt, epoch + 1, history, vocab, average)
            _write_metrics(out, history)
            if tc.plot:
                plot_history(history, out / PLOT_FILE)
        if ctx is not None:
            ctx.barrier()  # no rank runs ahead of the last checkpoint
        bar.set_postfix(loss=f"{row['loss']:.4f}")
    model = net
    if average is not None:
        model.load_state_dict(averaged_weights(average))
    model.eval()
    if not main:
        ctx.barrier()  # rank 0 writes the model directory
        return out / "model"
    metadata = {
        "source": "zeroground-train", "epochs": tc.epochs, "seed": tc.seed,
        "train_annotations": cfg.data.train_annotations, "features": cfg.data.video_features,
    }
    metadata.update(_feature_provenance(cfg.data.video_features))
    if ctx is not None:
        metadata["ddp_world_size"] = ctx.world_size
    path = save_model_dir(out / "model", model, cfg.model, vocab, metadata=metadata, text_encoder=tc.text_encoder)
    if ctx is not None:
        ctx.barrier()
    return path


def _feature_provenance(features: str) -> dict[str, Any]:
    """The encoder and fps a feature store records (``zeroground extract`` writes both), as
    ``video_encoder`` / ``feature_fps`` model metadata: ``zeroground ground`` then encodes new
    videos with the right encoder without being told (token models record no CLIP otherwise)."""
    from zeroground.features.store import FeatureStore

    attrs = FeatureStore.open(features).attrs
    out: dict[str, Any] = {}
    if attrs.get("encoder"):
        out["video_encoder"] = str(attrs["encoder"])
    if attrs.get("encoder_fingerprint"):
        out["video_encoder_fingerprint"] = str(attrs["encoder_fingerprint"])
        out["video_encoder_revision"] = str(attrs.get("encoder_revision", ""))
    if attrs.get("fps") is not None:
        out["feature_fps"] = float(attrs["fps"])
    return out
