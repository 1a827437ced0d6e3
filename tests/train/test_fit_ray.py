"""``zeroground fit --engine ray``: extraction, pseudo-labels and members on Ray give the model one process gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.train.test_fit import SMALL_WORLD
from zeroground.data.synthetic import make_world
from zeroground.demo.pipeline import shipped_tiny_clip
from zeroground.features.store import FeatureStore
from zeroground.train.fit import FitError, fit

pytest.importorskip("ray")
CHANGES = {"train.epochs": 4, "train.batch_size": 8, "train.ensemble": 2, "model.num_segments": 16}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    if not (shipped_tiny_clip() / "config.json").exists():
        pytest.skip("shipped tiny CLIP missing (run `make tiny-clip`)")
    out = tmp_path_factory.mktemp("world")
    make_world(out, "train", 8, seed=5, cfg=SMALL_WORLD)
    return out / "videos"


def test_fit_on_ray_gives_the_model_of_one_process(videos, ray_cluster, tmp_path):
    runs = {}
    for engine in ("local", "ray"):
        runs[engine] = fit([videos], "demo_lfvmr_psvlnet", shipped_tiny_clip(), tmp_path / engine,
                           overrides=CHANGES, progress=False, echo=None, engine=engine)
    local, ray_run = runs["local"], runs["ray"]
    with FeatureStore.open(local.features) as a, FeatureStore.open(ray_run.features) as b:
        assert a.video_ids == b.video_ids and len(a.video_ids) == 8
        assert max(float(np.abs(a[v] - b[v]).max()) for v in a.video_ids) <= 1e-5
    assert (tmp_path / "ray" / "features.h5.shards").is_dir()  # Ray Data wrote shards, then merged them
    for f_local, f_ray in zip(local.train_files, ray_run.train_files):
        assert f_local.read_bytes() == f_ray.read_bytes()  # the same pseudo-labels
        assert f_local.with_suffix(".npy").read_bytes() == f_ray.with_suffix(".npy").read_bytes()
    for k in (0, 1):
        wa = load_file(str(local.model / f"member_{k}" / "weights.safetensors"))
        wb = load_file(str(ray_run.model / f"member_{k}" / "weights.safetensors"))
        assert all(torch.equal(wa[n], wb[n]) for n in wa)


def test_fit_engine_errors(videos, tmp_path):
    with pytest.raises(FitError, match="unknown engine"):
        fit([videos], "demo_lfvmr_psvlnet", shipped_tiny_clip(), tmp_path / "x", engine="threads", echo=None)
    from zeroground.cli import app

    res = CliRunner().invoke(app, ["fit", str(videos), "--recipe", "demo_lfvmr_psvlnet", "--encoder",
                                   str(shipped_tiny_clip()), "--out", str(tmp_path / "y"), "--address", "ray://x:1"])
    assert res.exit_code == 2 and "--address belongs to --engine ray" in res.output
