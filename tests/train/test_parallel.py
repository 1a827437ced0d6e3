"""Parallel trainings: two members on Ray equal the same two trained one after the other."""

from __future__ import annotations

import dataclasses

import pytest
from safetensors.torch import load_file

from tests.train.test_loop import make_world, tiny_config
from zeroground.train.parallel import ParallelTrainingError, run_trainings, sweep_jobs

pytest.importorskip("ray")


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


def test_engine_names():
    from zeroground.train.fit import FitRun, fit_many
    from zeroground.train.parallel import resolve_engine

    assert resolve_engine("local") == "sequential" and resolve_engine("ray") == "ray"
    assert resolve_engine("auto") == "ray"  # Ray is installed here (importorskip above)
    assert run_trainings([], engine="ray") == []  # nothing to run: no cluster started
    with pytest.raises(ParallelTrainingError, match="unknown engine 'threads'"):
        fit_many([FitRun([], "demo_supervised", "x", "out")], engine="threads")
