"""Training the seed LFVMR with zeroground on the oracle's training items (features from its
recipes): it runs, lowers the loss, resumes after a kill to the same weights, and refuses
inputs that do not fit before any step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from zeroground.config import from_dict
from zeroground.features.store import MissingFeaturesError
from zeroground.train.config import TrainConfig
from zeroground.train.data import TrainingDataError
from zeroground.train.loop import CHECKPOINT_FILE, TrainingInterrupted, train

SLICE = Path(__file__).resolve().parents[1] / "data" / "lfvmr"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The first 48 training items and their video (1024-d, 4 fps) and CLIP (512-d, 1 fps) features."""
    import json

    root = tmp_path_factory.mktemp("lfvmr_train")
    items = json.loads((SLICE / "train_subset.json").read_text())[:48]
    (root / "train.json").write_text(json.dumps(items))
    for script, out in (("make_features.py", "feats"), ("make_clip_features.py", "clip")):
        subprocess.run([sys.executable, str(SLICE / script), str(root / "train.json"), "--out", str(root / out)],
                       check=True, capture_output=True)
    return root


def _cfg(data: Path, **train) -> TrainConfig:
    return from_dict(TrainConfig, {
        "model": {"architecture": "lfvmr"},
        "data": {"train_annotations": str(data / "train.json"), "video_features": str(data / "feats"),
                 "query_features": str(data / "clip"), "format": "psvl"},
        "train": {"epochs": 3, "batch_size": 16, "query_noise": "gaussian", "query_noise_level": 0.04,
                  "num_threads": 2, "plot": False, **train},
    })


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / CHECKPOINT_FILE, map_location="cpu", weights_only=True)["model"]


def test_seed_lfvmr_trains_lowers_the_loss_and_resumes_to_the_same_weights(data: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    model_dir = train(_cfg(data), whole, progress=False, log=None)
    import csv

    losses = [float(r["loss"]) for r in csv.DictReader((whole / "metrics.csv").open())]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert (model_dir / "config.yaml").read_text().startswith("model:\n  architecture: lfvmr")

    killed = tmp_path / "killed"
    with pytest.raises(TrainingInterrupted):
        train(_cfg(data), killed, progress=False, log=None, stop_after_steps=5)  # mid-epoch 2 (3 steps/epoch)
    train(_cfg(data), killed, resume=True, progress=False, log=None)
    a, b = _weights(whole), _weights(killed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    # the selector was trained jointly: its weights moved
    from safetensors.torch import load_file

    from zeroground.model.lfvmr import LFVMRConfig, LFVMRModel

    torch.manual_seed(38)  # train()'s initialisation: seed 38
    fresh = LFVMRModel(LFVMRConfig()).state_dict()
    trained = load_file(str(model_dir / "weights.safetensors"))
    moved = (trained["query_encoder.selector.logits.weight"] - fresh["query_encoder.selector.logits.weight"]).abs().max()
    assert float(moved) > 0


def test_inputs_that_do_not_fit_are_refused_before_training(data: Path, tmp_path: Path) -> None:
    import shutil

    clip = tmp_path / "clip"
    shutil.copytree(data / "clip", clip)
    gone = sorted(clip.glob("*.npy"))[0]
    gone.unlink()
    cfg = _cfg(data)
    cfg.data.query_features = str(clip)
    with pytest.raises(MissingFeaturesError, match=gone.stem):
        train(cfg, tmp_path / "r1", progress=False, log=None)
    cfg = _cfg(data)
    cfg.model.clip_dim = 256
    with pytest.raises(TrainingDataError, match=r"512-d but the model's query vectors are 256-d"):
        train(cfg, tmp_path / "r2", progress=False, log=None)
    cfg = _cfg(data)
    cfg.data.query_features = str(tmp_path / "nowhere")
    with pytest.raises(TrainingDataError, match="query feature store not found"):
        train(cfg, tmp_path / "r3", progress=False, log=None)
    assert not (tmp_path / "r1" / CHECKPOINT_FILE).exists()
    assert np.load(data / "clip" / f"{gone.stem}.npy").shape[1] == 512
