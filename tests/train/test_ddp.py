"""DDP training: 2 gloo ranks × B/2 equal 1 process × B; a killed rank resumes to the same weights."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from tests.conftest import REPO_ROOT
from tests.train.test_loop import make_world, tiny_config
from zeroground.config import save_config
from zeroground.model.cross_rank_bn import CrossRankBatchNorm, convert_cross_rank_batchnorm
from zeroground.train.loop import train

torch.set_num_threads(1)


def _config(world, **extra):
    feats, ann = world
    # dropout 0: dropout masks come from each rank's own RNG, the one thing DDP cannot replay
    return tiny_config(feats, ann, **{"train.epochs": 4, "train.batch_size": 16, "train.plot": False,
                                      "model.dropout": 0.0, "model.nonlocal_dropout": 0.0, **extra})


def _torchrun(args: list[str], nproc: int = 2, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO_ROOT)


def _max_diff(a_dir: Path, b_dir: Path) -> float:
    a, b = load_file(str(a_dir / "weights.safetensors")), load_file(str(b_dir / "weights.safetensors"))
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def single(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "run"
    return train(_config(world), out, progress=False, log=None)


def test_two_gloo_ranks_equal_one_process_step_by_step(world, tmp_path):
    """20 SGD steps: 2 ranks × 8 vs 1 process × 16, weights and every gradient compared.

    In float64: in float32 this model's trajectory is chaotic at the 1-ulp level (a BatchNorm
    output within ~1e-7 of 0 flips its ReLU, and the flip's gradient moves every later step),
    so after 20 steps *any* rounding difference -- 1 vs 2 threads, every weight of one
    process nudged by 1 ulp -- sometimes ends 1.6e-4 apart and sometimes 2e-7 apart
    (docs/scaling.md). In float64 nothing is near a flip, and what is left is DDP itself:
    the split, the loss scale, the cross-rank BatchNorm and the gradient average."""
    cfg_file = tmp_path / "cfg.yaml"
    save_config(_config(world), cfg_file)
    worker = str(REPO_ROOT / "tests" / "train" / "ddp_equivalence_worker.py")
    res = _torchrun([worker, str(cfg_file), str(tmp_path / "diff.json"), "float64"])
    assert res.returncode == 0, res.stderr[-3000:]
    diff = json.loads((tmp_path / "diff.json").read_text())
    assert diff["steps"] == 20 and diff["moved"] > 1e-2  # trained: not a comparison of two initial models
    assert diff["weight_diff"] <= 1e-4, diff  # the bar; measured 3.3e-16
    assert diff["weight_diff"] <= 1e-12, diff  # and the rounding of float64, nothing more
    assert diff["grad_diff"] <= 1e-10, diff  # relative to the largest gradient entry, worst step (measured 3e-14)


def test_ddp_training_run_is_one_process_up_to_float32_summation_order(world, single, tmp_path):
    """The real ``zeroground train --ddp`` (Adam) vs one process: as close as one process is
    to itself with 2 threads instead of 1, and the logged losses are the global means."""
    cfg_file = tmp_path / "cfg.yaml"
    save_config(_config(world), cfg_file)
    res = _torchrun(["-m", "zeroground", "train", "--ddp", "--config", str(cfg_file), "--out", str(tmp_path / "ddp"),
                     "--quiet"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("model written to") == 1  # logged once, by rank 0
    two_threads = train(_config(world, **{"train.num_threads": 2}), tmp_path / "threads2", progress=False, log=None)
    torch.set_num_threads(1)
    order_noise = _max_diff(single, two_threads)
    assert _max_diff(single, tmp_path / "ddp" / "model") <= max(1e-4, 2 * order_noise)
    rows = list(csv.DictReader(open(tmp_path / "ddp" / "metrics.csv")))
    ref = list(csv.DictReader(open(single.parent / "metrics.csv")))
    assert len(rows) == 4
    assert float(rows[0]["loss"]) == pytest.approx(float(ref[0]["loss"]), abs=1e-4)
    for r, s in zip(rows, ref):
        assert float(r["loss"]) == pytest.approx(float(s["loss"]), abs=2e-2)
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])


def test_killed_rank_resumes_from_the_last_checkpoint_to_the_same_weights(world, single, tmp_path):
    cfg_file = tmp_path / "cfg.yaml"
    save_config(_config(world), cfg_file)
    run = tmp_path / "run"
    killer = str(REPO_ROOT / "tests" / "train" / "ddp_kill_rank.py")
    res = _torchrun([killer, "10", "--ddp", "--config", str(cfg_file), "--out", str(run), "--quiet"])
    assert res.returncode != 0  # rank 1 died in epoch 3: torchrun tore the job down
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and not (run / "model").exists()
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    res = _torchrun(["-m", "zeroground", "train", "--ddp", "--resume", str(run), "--quiet"])
    assert res.returncode == 0, res.stderr[-3000:]
    straight = tmp_path / "straight"
    res = _torchrun(["-m", "zeroground", "train", "--ddp", "--config", str(cfg_file), "--out", str(straight), "--quiet"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert _max_diff(straight / "model", run / "model") == 0.0  # the same result as a run never killed


def test_cross_rank_batchnorm_is_batchnorm_in_one_process():
    torch.manual_seed(0)
    ref = nn.Sequential(nn.BatchNorm1d(6))
    ours = convert_cross_rank_batchnorm(nn.Sequential(nn.BatchNorm1d(6)))
    assert isinstance(ours[0], CrossRankBatchNorm)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(5, 6, 7, requires_grad=True)
    y_ref, y = ref(x), ours(x)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(ours[0].running_var, ref[0].running_var)
    ours.eval(); ref.eval()
    torch.testing.assert_close(ours(x), ref(x))


def test_ddp_outside_torchrun_says_how_to_launch(monkeypatch):
    from zeroground.train.ddp import DistributedSetupError, init_distributed

    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(DistributedSetupError, match="torchrun --nproc_per_node"):
        init_distributed()


def test_split_invariant_batch_norm_is_batchnorm_to_float32_rounding():
    """Forward, input/weight/bias gradients and running statistics against float64 BatchNorm,
    on the channels-last layout the fast model feeds it; and a batch split in two gives the
    same statistics to the bit (what the cross-rank all-reduce adds up)."""
    from zeroground.model.cross_rank_bn import _row_sums, split_invariant_batch_norm

    g = torch.Generator().manual_seed(0)
    x = (3 + 2 * torch.randn(12, 8, 1, 20, generator=g)).contiguous(memory_format=torch.channels_last)
    w, b, dy = torch.randn(8, generator=g), torch.randn(8, generator=g), torch.randn(12, 8, 1, 20, generator=g)
    outs = []
    for dtype in (torch.float32, torch.float64):
        xi, wi, bi = (t.detach().to(dtype).clone().requires_grad_() for t in (x, w, b))
        rm, rv = torch.zeros(8, dtype=dtype), torch.ones(8, dtype=dtype)
        if dtype is torch.float32:
            y = split_invariant_batch_norm(xi, rm, rv, wi, bi, 0.1, 1e-5)
        else:
            y = F.batch_norm(xi, rm, rv, wi, bi, True, 0.1, 1e-5)
        y.backward(dy.to(dtype))
        outs.append([t.double() for t in (y, xi.grad, wi.grad, bi.grad, rm, rv)])
    for ours, ref in zip(*outs):
        assert float((ours - ref).abs().max() / ref.abs().max()) < 2e-7
    assert torch.equal(_row_sums(x), _row_sums(x[:5]) + _row_sums(x[5:]))  # float64 sums of float32 rows
