"""Training: loss goes down, the run directory is complete, a killed run resumes to the same weights."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from zeroground.model import load_model_dir, predict_spans
from zeroground.config import parse_overrides
from zeroground.train.config import TrainConfig
from zeroground.model.predict import FeatureDimError
from zeroground.train.data import TrainingDataError
from zeroground.train.loop import TrainingInterrupted, train

torch.set_num_threads(1)

WORDS = ["open", "close", "door", "sit", "chair", "eat", "sandwich", "walk"]
DIM = 16


def _direction(word: str) -> np.ndarray:
    v = np.random.default_rng(WORDS.index(word) + 100).standard_normal(DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


def make_world(folder: Path, videos: int = 24, seed: int = 0) -> tuple[Path, Path]:
    """Videos whose frames inside the annotated span carry the query words' directions."""
    rng = np.random.default_rng(seed)
    feats = folder / "feats"
    feats.mkdir(parents=True)
    items = []
    for v in range(videos):
        T = int(rng.integers(20, 200))
        x = 0.3 * rng.standard_normal((T, DIM)).astype(np.float32)
        for _ in range(3):
            words = list(rng.choice(WORDS, size=2, replace=False))
            s = float(rng.uniform(0, 0.6))
            e = float(min(1.0, s + rng.uniform(0.1, 0.4)))
            a, b = int(s * (T - 1)), int(np.ceil(e * (T - 1)))
            for w in words:
                x[a:b + 1] += _direction(w)
            items.append({"vid": f"v{v:03d}", "duration": T / 4, "timestamp": [s, e], "tokens": words})
        np.save(feats / f"v{v:03d}.npy", x)
    ann = folder / "train.json"
    ann.write_text(json.dumps(items))
    return feats, ann


def tiny_config(feats: Path, ann: Path, **overrides) -> TrainConfig:
    from zeroground.config import from_dict

    data = {
        "model": {"video_dim": DIM, "num_segments": 32, "embed_dim": 16, "query_gru_hidden": 16,
                  "video_gru_hidden": 16, "hidden": 32, "fusion_layers": 1, "nonlocal_layers": 1,
                  "clip_dim": DIM, "clip_query_len": 2},
        "data": {"train_annotations": str(ann), "video_features": str(feats)},
        "train": {"epochs": 6, "batch_size": 16, "lr": 3e-3, "num_threads": 1, "plot": True},
    }
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return from_dict(TrainConfig, data)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path]:
    return make_world(tmp_path_factory.mktemp("world"))


def test_training_lowers_the_loss_and_writes_the_run_directory(world, tmp_path: Path) -> None:
    feats, ann = world
    run = tmp_path / "run"
    model_dir = train(tiny_config(feats, ann, **{"data.val_annotations": str(ann)}), run, progress=False, log=None)
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 7))
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < 0.9 * losses[0]
    assert {"val_R1@0.5", "val_mIoU"} <= set(rows[0])
    assert (run / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    resolved = (run / "config.yaml").read_text()
    assert "vocab_size: 12" in resolved  # 8 words + 4 specials, fixed from the data
    model, cfg, vocab = load_model_dir(model_dir)
    assert cfg.video_dim == DIM and len(vocab) == 12
    pred = predict_spans(model, cfg, vocab, np.load(feats / "v000.npy"), [["open", "door"], ["sit"]])
    assert pred.spans.shape == (2, 2) and pred.attention.shape == (2, 32)
    np.testing.assert_allclose(pred.attention[pred.video_mask].reshape(2, -1).sum(1), 1.0, atol=1e-5)


def test_killed_run_resumes_to_identical_weights(world, tmp_path: Path) -> None:
    feats, ann = world
    cfg = lambda: tiny_config(feats, ann, **{"train.epochs": 3, "train.plot": False})  # noqa: E731
    straight = train(cfg(), tmp_path / "straight", progress=False, log=None)
    # 72 samples / 16 = 4 steps per epoch: stop in the middle of epoch 2
    with pytest.raises(TrainingInterrupted):
        train(cfg(), tmp_path / "killed", progress=False, log=None, stop_after_steps=6)
    assert torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert not (tmp_path / "killed" / "model").exists()
    with pytest.raises(TrainingDataError, match="--resume"):
        train(cfg(), tmp_path / "killed", progress=False, log=None)
    resumed = train(TrainConfig(), tmp_path / "killed", resume=True, progress=False, log=None)
    a, b = load_file(str(straight / "weights.safetensors")), load_file(str(resumed / "weights.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "straight" / "metrics.csv").read_text().count("\n") == 4
    straight_rows = list(csv.DictReader((tmp_path / "straight" / "metrics.csv").open()))
    resumed_rows = list(csv.DictReader((tmp_path / "killed" / "metrics.csv").open()))
    assert [r["loss"] for r in straight_rows] == [r["loss"] for r in resumed_rows]


def test_feature_dimension_mismatch_fails_before_any_work(world, tmp_path: Path) -> None:
    feats, ann = world
    with pytest.raises(FeatureDimError, match=r"features are 16-d but the model expects 32-d.*set model.video_dim: 16"):
        train(tiny_config(feats, ann, **{"model.video_dim": 32}), tmp_path / "run", progress=False, log=None)
    assert not (tmp_path / "run").exists()


def test_clip_query_training_with_lfvmr_noise(world, tmp_path: Path) -> None:
    feats, ann = world
    items = json.loads(ann.read_text())
    vectors = np.stack([sum(_direction(w) for w in it["tokens"]) for it in items]).astype(np.float32)
    np.save(tmp_path / "q.npy", vectors)
    cfg = tiny_config(feats, ann, **{"model.query_encoder": "clip", "data.query_vectors": str(tmp_path / "q.npy"),
                                     "train.query_noise": "lafite", "train.query_noise_level": 0.3,
                                     "train.epochs": 2, "train.plot": False})
    model_dir = train(cfg, tmp_path / "run", progress=False, log=None)
    model, mcfg, vocab = load_model_dir(model_dir)
    assert mcfg.query_encoder == "clip" and vocab is None
    pred = predict_spans(model, mcfg, vocab, np.load(feats / "v001.npy"), vectors[:3])
    assert pred.spans.shape == (3, 2) and np.isfinite(pred.spans).all()
    with pytest.raises(ValueError, match=r"CLIP vectors of shape \[N, 16\]"):
        predict_spans(model, mcfg, vocab, np.load(feats / "v001.npy"), vectors[:3, :8])


def test_overrides_parse_yaml_values() -> None:
    assert parse_overrides(["train.epochs=5", "data.video_features=/x/y", "train.betas=[0.8, 0.9]"]) == {
        "train.epochs": 5, "data.video_features": "/x/y", "train.betas": [0.8, 0.9]}
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["train.epochs"])


def test_cli_run_killed_by_a_signal_resumes_to_identical_weights(world, tmp_path: Path) -> None:
    """A real kill (SIGKILL of `zeroground train`) after the first checkpoint, then --resume."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from zeroground.config import to_dict

    feats, ann = world
    # A run that finishes before the kill lands proves nothing: retry with a longer one.
    for epochs in (5, 20, 80):
        cfg = tiny_config(feats, ann, **{"train.epochs": epochs, "train.plot": False, "train.batch_size": 8})
        (tmp_path / f"cfg{epochs}.yaml").write_text(yaml.safe_dump(to_dict(cfg)))
        cmd = [sys.executable, "-m", "zeroground", "train", "--config", str(tmp_path / f"cfg{epochs}.yaml"), "--quiet"]
        run = tmp_path / f"killed{epochs}"
        proc = subprocess.Popen([*cmd, "--out", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while not (run / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if not (run / "model").exists():
            break
    else:
        pytest.fail("every run finished before it could be killed, up to 80 epochs")
    assert (run / "checkpoint.pt").exists()
    res = subprocess.run([sys.executable, "-m", "zeroground", "train", "--resume", str(run), "--quiet"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    straight = train(cfg, tmp_path / "straight", progress=False, log=None)
    a = load_file(str(straight / "weights.safetensors"))
    b = load_file(str(run / "model" / "weights.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_localization_loss_weight_multiplies_the_smooth_l1_term_exactly() -> None:
    from zeroground.model.psvl import grounding_loss

    outputs = {"timestamps": torch.tensor([[0.1, 0.9], [0.3, 0.4]]),
               "attention_weights": torch.tensor([[0.5, 0.25, 0.25, 0.0], [0.1, 0.2, 0.3, 0.4]])}
    start, end = torch.tensor([0.0, 0.5]), torch.tensor([0.5, 1.0])
    guidance = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    # independent values: SmoothL1 (beta 1) = 0.5 d^2 for |d| < 1, mean over the batch
    loc = (0.5 * 0.1**2 + 0.5 * 0.2**2) / 2 + (0.5 * 0.4**2 + 0.5 * 0.6**2) / 2
    att = (-(np.log(0.5 + 1e-8) + np.log(0.25 + 1e-8)) / 2 - (np.log(0.3 + 1e-8) + np.log(0.4 + 1e-8)) / 2) / 2
    ref = grounding_loss(outputs, start, end, guidance)
    assert float(ref["localization_loss"]) == pytest.approx(loc, rel=1e-6)
    assert float(ref["loss"]) == pytest.approx(loc + att, rel=1e-6)
    heavy = grounding_loss(outputs, start, end, guidance, localization_weight=10.0)
    assert float(heavy["localization_loss"]) == pytest.approx(loc, rel=1e-6)  # reported unweighted
    assert float(heavy["loss"]) == pytest.approx(10 * loc + att, rel=1e-6)


def test_localization_loss_weight_is_a_train_option_and_default_is_the_reference(world, tmp_path: Path) -> None:
    from zeroground.train.config import OptimConfig

    assert OptimConfig().localization_loss_weight == 1.0
    feats, ann = world
    one = train(tiny_config(feats, ann, **{"train.epochs": 1}), tmp_path / "w1", progress=False, log=None)
    ten = train(tiny_config(feats, ann, **{"train.epochs": 1, "train.localization_loss_weight": 10.0}),
                tmp_path / "w10", progress=False, log=None)
    assert "localization_loss_weight: 10.0" in (tmp_path / "w10" / "config.yaml").read_text()
    r1 = next(csv.DictReader((tmp_path / "w1" / "metrics.csv").open()))
    r10 = next(csv.DictReader((tmp_path / "w10" / "metrics.csv").open()))
    # same seed, same first batch: only the weighting of the loss differs, so the weights do too
    assert float(r10["loss"]) > float(r1["loss"])
    a = load_file(str(one / "weights.safetensors"))
    b = load_file(str(ten / "weights.safetensors"))
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_word_vectors_start_the_embedding_and_stay_frozen(world, tmp_path: Path) -> None:
    from zeroground.features.clip import load_clip
    from zeroground.testing import make_tiny_clip

    feats, ann = world
    clip_dir = make_tiny_clip(tmp_path / "clip", words=WORDS, proj_dim=16)
    cfg = tiny_config(feats, ann, **{"train.word_vectors": str(clip_dir), "train.freeze_word_vectors": True,
                                     "train.epochs": 2, "train.plot": False, "train.word_dropout": 0.2})
    model_dir = train(cfg, tmp_path / "run", progress=False, log=None)
    model, _, vocab = load_model_dir(model_dir)
    text = load_clip(str(clip_dir)).encode_texts(["open", "door"])  # [2, 16], unit rows
    emb = model.query_encoder.embedding.weight.detach().numpy()
    np.testing.assert_allclose(emb[[vocab["open"], vocab["door"]]], text * 4.0, atol=1e-5)  # sqrt(16) = 4
    with pytest.raises(TrainingDataError, match="embed_dim to 16"):
        train(tiny_config(feats, ann, **{"train.word_vectors": str(clip_dir), "model.embed_dim": 8}),
              tmp_path / "bad", progress=False, log=None)
    with pytest.raises(TrainingDataError, match="only a token-query model"):
        train(tiny_config(feats, ann, **{"train.word_vectors": str(clip_dir), "model.query_encoder": "clip",
                                         "train.freeze_word_vectors": True}),
              tmp_path / "bad3", progress=False, log=None)
    with pytest.raises(TrainingDataError, match="word_dropout"):
        train(tiny_config(feats, ann, **{"train.word_dropout": 1.0}), tmp_path / "bad2", progress=False, log=None)


def test_model_dir_records_the_features_encoder_and_fps_for_ground(world, tmp_path: Path) -> None:
    from zeroground.features.store import write_features_h5
    from zeroground.ground import Grounder
    from zeroground.model.model_dir import read_model_config

    feats, ann = world
    arrays = {p.stem: np.load(p) for p in sorted(feats.glob("*.npy"))}
    h5 = write_features_h5(tmp_path / "f.h5", arrays, attrs={"fps": 4.0, "encoder": "my/clip-dir"})
    model_dir = train(tiny_config(h5, ann, **{"train.epochs": 1, "train.plot": False}), tmp_path / "run",
                      progress=False, log=None)
    _, meta = read_model_config(model_dir)
    assert meta["video_encoder"] == "my/clip-dir" and meta["feature_fps"] == 4.0
    g = Grounder(model_dir, cache_dir=tmp_path / "cache")  # a token model: nothing else names a CLIP
    assert (g.encoder_name, g.fps) == ("my/clip-dir", 4.0)
    assert Grounder(model_dir, "other", fps=1.0, cache_dir=tmp_path / "cache").fps == 1.0  # the caller wins
    # an npy folder without attrs records neither
    plain = train(tiny_config(feats, ann, **{"train.epochs": 1, "train.plot": False}), tmp_path / "run2",
                  progress=False, log=None)
    assert "video_encoder" not in read_model_config(plain)[1]
