"""Parallel trainings: two members on Ray equal the same two trained one after the other."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from tests.train.test_loop import make_world, tiny_config
from zeroground.train.parallel import ParallelTrainingError, run_trainings, sweep_jobs


def test_two_members_on_ray_equal_sequential(tmp_path):
    import ray

    feats, ann = make_world(tmp_path / "world", videos=12)
    base = dataclasses.asdict(tiny_config(feats, ann, **{"train.epochs": 2, "train.plot": False}))
    overrides = [{"name": "seed1", "train.seed": 1}, {"name": "seed2", "train.seed": 2}]
    seq = run_trainings(sweep_jobs(base, overrides, tmp_path / "seq"), engine="sequential")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        par = run_trainings(sweep_jobs(base, overrides, tmp_path / "ray"), engine="ray", num_threads=1)
    finally:
        ray.shutdown()
    assert [p.split("/")[-2] for p in par] == ["seed1", "seed2"]
    for a, b in zip(seq, par):
        wa, wb = load_file(f"{a}/weights.safetensors"), load_file(f"{b}/weights.safetensors")
        assert all((wa[k] == wb[k]).all() for k in wa)
    w1, w2 = (load_file(f"{p}/weights.safetensors") for p in seq)
    assert any((w1[k] != w2[k]).any() for k in w1)  # different seeds: different members
    with pytest.raises(ParallelTrainingError, match="unknown engine"):
        run_trainings([], engine="threads")
    with pytest.raises(ParallelTrainingError, match="used twice"):
        sweep_jobs(base, [{"name": "a"}, {"name": "a"}], tmp_path)


def _same_weights(a, b) -> bool:
    wa, wb = load_file(f"{a}/weights.safetensors"), load_file(f"{b}/weights.safetensors")
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_bagged_ensemble_members_on_ray_equal_sequential(ray_cluster, tmp_path):
    """train.ensemble 2 + bagging: member 1 on its own draw; Ray (one process per member) and one
    after the other give the same member weights and the same joined model."""
    import json

    from zeroground.train.members import draw_path, train_ensemble

    feats, ann = make_world(tmp_path / "world", videos=12)
    items = json.loads(ann.read_text())
    draw_path(ann, 1).write_text(json.dumps(items[::-1][: len(items) - 5]))  # another draw: other order, fewer items
    cfg = tiny_config(feats, ann, **{"train.epochs": 2, "train.plot": False, "train.ensemble": 2, "train.bagging": True})
    seq = train_ensemble(cfg, tmp_path / "seq", progress=False, log=None)
    par = train_ensemble(cfg, tmp_path / "ray", progress=False, log=None, engine="ray")
    for k in (0, 1):
        assert _same_weights(tmp_path / "seq" / f"member_{k}" / "model", tmp_path / "ray" / f"member_{k}" / "model")
    assert not _same_weights(tmp_path / "seq" / "member_0" / "model", tmp_path / "seq" / "member_1" / "model")
    assert sorted(p.name for p in seq.iterdir()) == sorted(p.name for p in par.iterdir())
    with pytest.raises(Exception, match="already holds a training run"):
        train_ensemble(cfg, tmp_path / "ray", progress=False, log=None, engine="ray")  # without resume
    assert train_ensemble(cfg, tmp_path / "ray", resume=True, progress=False, log=None, engine="ray") == par


def test_train_sweep_cli_runs_each_override_on_ray_into_one_table(ray_cluster, tmp_path):
    import json

    import yaml
    from typer.testing import CliRunner

    from zeroground.cli import app
    from zeroground.config import save_config

    feats, ann = make_world(tmp_path / "world", videos=12)
    cfg = tiny_config(feats, ann, **{"train.epochs": 2, "train.plot": False})
    save_config(cfg, tmp_path / "base.yaml")
    overrides = [{"name": "lr1", "train.lr": 1e-3}, {"name": "lr3", "train.lr": 3e-3}, {"train.seed": 5}]
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(overrides))
    res = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "base.yaml"), "--sweep", str(tmp_path / "sweep.yaml"),
                                   "--out", str(tmp_path / "sweep"), "--quiet"])
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [r["name"] for r in rows] == ["lr1", "lr3", "run2"]
    assert rows[0]["overrides"] == {"train.lr": 1e-3} and rows[0]["epoch"] == 2.0
    assert all(r["loss"] > 0 for r in rows) and "lr3" in res.output and "sweep.json" in res.output
    # each run is the training its overrides describe, run alone in this process
    base = dataclasses.asdict(cfg)
    seq = run_trainings(sweep_jobs(base, overrides, tmp_path / "seq"), engine="local")
    for r, s in zip(rows, seq):
        assert _same_weights(r["model"], s)
    again = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "base.yaml"), "--sweep", str(tmp_path / "sweep.yaml"),
                                     "--out", str(tmp_path / "sweep")])
    assert again.exit_code == 2 and "--resume" in again.output  # one line, no traceback
    resumed = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / "sweep"), "--sweep", str(tmp_path / "sweep.yaml")])
    assert resumed.exit_code == 0, resumed.output  # finished runs are kept


def test_a_member_whose_worker_is_killed_is_retried_and_resumes_to_the_same_weights(ray_cluster, tmp_path):
    """SIGKILL of the worker process in epoch 2 of 3: Ray retries the job in a fresh process,
    which continues from the member's epoch-1 checkpoint and ends with the weights of a run
    never killed."""
    from zeroground.train.members import _member_job

    feats, ann = make_world(tmp_path / "world", videos=12)
    cfg = tiny_config(feats, ann, **{"train.epochs": 3, "train.plot": False, "train.ensemble": 2})
    marker = tmp_path / "killed"

    def dying_member(cfg, member_index, out, resume):
        import os
        import signal

        import zeroground.train.loop as loop

        real, calls = loop.grounding_loss, [0]

        def counting(*args, **kwargs):
            calls[0] += 1
            if member_index == 1 and calls[0] == 4 and not marker.exists():  # the 4th step: epoch 2 of 3
                marker.write_text("killed")
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)

        loop.grounding_loss = counting
        return _member_job(cfg, member_index, out, resume)

    jobs = [(dying_member, {"cfg": cfg, "member_index": k, "out": str(tmp_path / "ray"), "resume": False})
            for k in range(2)]
    par = run_trainings(jobs, engine="ray", num_threads=1)
    assert marker.exists()  # the kill happened
    seq = [_member_job(cfg, k, str(tmp_path / "seq"), False) for k in range(2)]
    for a, b in zip(seq, par):
        assert _same_weights(a, b)


def test_engine_names():
    from zeroground.train.fit import FitError, FitRun, fit_many
    from zeroground.train.parallel import resolve_engine

    assert resolve_engine("local") == "sequential" and resolve_engine("ray") == "ray"
    assert resolve_engine("auto") == "ray"  # Ray is installed here (the test extras)
    assert run_trainings([], engine="ray") == []  # nothing to run: no cluster started
    with pytest.raises(FitError, match="unknown engine 'threads'"):
        fit_many([FitRun([], "demo_supervised", "x", "out")], engine="threads")


def test_the_cost_estimate_orders_longer_and_wider_members_first(tmp_path):
    """fit_many starts the members with the largest epochs × items × parameters first (LPT)."""
    from zeroground.train.members import estimated_cost

    feats, ann = make_world(tmp_path / "world", videos=6)
    short = tiny_config(feats, ann, **{"train.epochs": 2})
    longer = tiny_config(feats, ann, **{"train.epochs": 20})
    wider = tiny_config(feats, ann, **{"train.epochs": 2, "model.hidden": 128})
    assert estimated_cost(longer, 0) == pytest.approx(10 * estimated_cost(short, 0))
    assert estimated_cost(wider, 0) > 4 * estimated_cost(short, 0)
