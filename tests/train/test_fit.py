"""``zeroground fit``: 20 generated videos + tiny CLIP → a model ``zeroground ground`` uses;
killed during training and rerun, it ends with the model of an uninterrupted run; bad
input is refused before any work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from zeroground.cli import app
from zeroground.config import ConfigError, parse_overrides
from zeroground.data.synthetic import make_world
from zeroground.data.synthetic.world import WorldConfig
from zeroground.demo.pipeline import shipped_tiny_clip
from zeroground.train.fit import FitError, RunDirTaken, fit

SMALL_WORLD = WorldConfig(min_events=2, max_events=3, min_duration=12.0, max_duration=20.0, min_event_s=3.0,
                          max_event_s=5.0, min_idle_s=0.5, max_idle_s=1.0)
# the demo's LFVMR-variant recipe at test size: 2 members, a few epochs
CHANGES = ["train.epochs=12", "train.batch_size=8", "train.ensemble=2", "model.num_segments=16"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    # shipped in the package: missing is a failure, not a skip
    assert (shipped_tiny_clip() / "config.json").exists(), "shipped tiny CLIP missing (run `make tiny-clip`)"
    out = tmp_path_factory.mktemp("world")
    make_world(out, "train", 20, seed=3, cfg=SMALL_WORLD)
    return out / "videos"


def _fit_cmd(videos: Path, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "zeroground", "fit", str(videos), "--recipe", "demo_lfvmr_psvlnet",
           "--encoder", str(shipped_tiny_clip()), "--out", str(out), "--quiet"]
    for change in CHANGES:
        cmd += ["--set", change]
    return cmd


def _weights(model_dir: Path) -> dict:
    return {f"{k}/{name}": t for k in ("member_0", "member_1")
            for name, t in load_file(str(model_dir / k / "weights.safetensors")).items()}


@pytest.fixture(scope="module")
def uninterrupted(videos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fit_whole") / "run"
    subprocess.run(_fit_cmd(videos, out), check=True, capture_output=True, timeout=600)
    return out


def test_fit_writes_every_stage_and_a_model_ground_uses(uninterrupted, videos):
    out = uninterrupted
    assert (out / "features.h5").is_file() and (out / "pseudo" / "lfvmr_psvlnet.json").is_file()
    assert (out / "pseudo" / "lfvmr_psvlnet.npy").is_file()
    assert sorted(p.name for p in (out / "train").glob("member_*")) == ["member_0", "member_1"]
    resolved = yaml.safe_load((out / "recipe.yaml").read_text())
    assert resolved["recipe"] == "demo_lfvmr_psvlnet" and resolved["resolved"]["train"]["epochs"] == 12
    cfg = yaml.safe_load((out / "model" / "config.yaml").read_text())
    assert cfg["metadata"]["ensemble_members"] == ["member_0", "member_1"]
    assert cfg["metadata"]["text_encoder"] == str(shipped_tiny_clip()) and "text_encoder" not in cfg["model"]
    assert cfg["metadata"]["readout"] == {"span": "attention", "attention_ratio": 1 / 3}  # the recipe's
    res = CliRunner().invoke(app, ["ground", str(videos / "train_0000.mp4"), "the person opens the door",
                                   "--model", str(out / "model"), "--cache-dir", str(out / "cache")])
    assert res.exit_code == 0, res.output
    assert "model" in res.output  # rank 1 comes from the trained model


def test_rerun_of_a_complete_run_does_nothing(uninterrupted, videos):
    before = (out_model := uninterrupted / "model" / "config.yaml").stat().st_mtime_ns
    result = fit([videos], "demo_lfvmr_psvlnet", str(shipped_tiny_clip()), uninterrupted,
                 overrides=parse_overrides(CHANGES),
                 progress=False, echo=None)
    assert result.skipped == ["all"] and out_model.stat().st_mtime_ns == before


def test_killed_during_training_resumes_to_the_same_model(uninterrupted, videos, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_fit_cmd(videos, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = out / "train" / "member_0" / "checkpoint.pt"
    deadline = time.time() + 300
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "model.done").exists(), "the run finished before it could be killed"
    assert target.exists()
    subprocess.run(_fit_cmd(videos, out), check=True, capture_output=True, timeout=600)
    a, b = _weights(uninterrupted / "model"), _weights(out / "model")
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] == b[name]).all(), name


def test_bad_input_is_refused_before_any_work(videos, tmp_path):
    clip = str(shipped_tiny_clip())
    with pytest.raises(FitError, match="no video files"):
        fit([tmp_path], "demo_lfvmr_psvlnet", clip, tmp_path / "a")
    with pytest.raises(ConfigError, match="epochz"):
        fit([videos], "demo_lfvmr_psvlnet", clip, tmp_path / "b", overrides={"train.epochz": 3})
    with pytest.raises(FitError, match="1024-d video features"):
        fit([videos], "charades_lfvmr_psvlnet", clip, tmp_path / "c")
    with pytest.raises(FitError, match="--corpus"):
        fit([videos], "demo_psvl", clip, tmp_path / "d")
    assert not any((tmp_path / n).exists() for n in "abcd")  # nothing was written
    res = CliRunner().invoke(app, ["fit", str(videos), "--recipe", "nope", "--encoder", clip, "--out", str(tmp_path / "e")])
    assert res.exit_code == 2 and "unknown recipe 'nope'" in res.output and "Traceback" not in res.output


def test_a_run_dir_refuses_another_recipe(uninterrupted, videos):
    with pytest.raises(RunDirTaken, match="another recipe"):
        fit([videos], "demo_supervised", str(shipped_tiny_clip()), uninterrupted,
            annotations=videos.parent / "annotations" / "train.json")
