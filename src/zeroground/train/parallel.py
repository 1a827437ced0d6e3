"""Independent trainings (ensemble members, bagged members, a sweep) side by side on Ray.

A job is ``(callable, kwargs)`` returning a path (a model directory). ``engine="ray"``
runs each job as a Ray task, one job at a time per worker process, with ``num_threads``
torch threads, on the local machine's cores by default or on the cluster at ``address``;
a worker killed mid-job is retried (the training loop resumes from its checkpoint when the
job function does). Workers are reused from job to job, as the sequential engine reuses
this process: a job seeds everything it draws from and :func:`_run_job` restores the
thread count, so no state passes from one job to the next, and a reused worker skips the
seconds of start-up (torch, and for word-vector recipes transformers) a fresh one pays. ``engine="sequential"`` (or ``"local"``) runs them one after the other in this process. With the
same seeds both give the same weights: each job sets its own seeds and threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from zeroground.errors import ZerogroundError

Job = tuple[Callable[..., Any], dict[str, Any]]
ENGINES = ("sequential", "local", "ray")  # "local" = "sequential" (the name `--engine local` uses)


class ParallelTrainingError(ZerogroundError, RuntimeError):
    """A bad engine, or a job that failed (the message names it)."""


def _run_job(fn: Callable[..., Any], kwargs: dict[str, Any], num_threads: int | None, cwd: str | None = None) -> Any:
    """One job with ``num_threads`` torch threads; the process's thread count is restored after
    it (in this process the sequential engine leaves what follows as a fresh Ray worker would).
    ``cwd``: the driver's working directory, entered when it exists here (a worker on the same
    machine then reads relative paths as the driver does)."""
    import os

    import torch

    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)
    before = torch.get_num_threads()
    try:
        if num_threads:
            torch.set_num_threads(num_threads)
        return fn(**kwargs)
    finally:
        torch.set_num_threads(before)


def resolve_engine(engine: str) -> str:
    """``auto`` → ``ray`` when Ray is installed, else ``sequential``; ``local`` → ``sequential``;
    any other name as given."""
    if engine != "auto":
        return "sequential" if engine == "local" else engine
    import importlib.util

    return "ray" if importlib.util.find_spec("ray") is not None else "sequential"


def run_trainings(jobs: Sequence[Job], engine: str = "sequential", num_threads: int | None = 1,
                  address: str | None = None, retries: int = 2,
                  on_done: Callable[[int, Any], None] | None = None,
                  alongside: Callable[[], Any] | None = None) -> list[Any]:
    """Run every job; results in the order of ``jobs``. ``on_done(i, result)`` is called as job ``i``
    finishes (in the order they finish under Ray). ``alongside()``: other work of this process,
    done while the Ray workers train (sequential engine: before the jobs)."""
    if engine not in ENGINES:
        raise ParallelTrainingError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if not jobs or engine in ("sequential", "local"):
        if alongside is not None:
            alongside()
    if not jobs:
        return []
    if engine in ("sequential", "local"):
        results = []
        for i, (fn, kw) in enumerate(jobs):
            results.append(_run_job(fn, kw, num_threads))
            if on_done is not None:
                on_done(i, results[-1])
        return results
    from zeroground.features.ray_extract import init_ray

    import ray

    started = init_ray(address)
    try:
        remote = ray.remote(num_cpus=num_threads or 1, max_retries=retries)(_run_job)
        import os

        refs = [remote.remote(fn, kw, num_threads, os.getcwd()) for fn, kw in jobs]
        if alongside is not None:
            alongside()
        index = {ref: i for i, ref in enumerate(refs)}
        out: dict[int, Any] = {}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            i = index[ready[0]]
            try:
                out[i] = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                raise ParallelTrainingError(f"training job {i} failed: {exc}") from None
            if on_done is not None:
                on_done(i, out[i])
        return [out[i] for i in range(len(refs))]
    finally:
        if started:
            ray.shutdown()


def _train_job(config: dict[str, Any], out: str, resume: bool = False) -> str:
    from zeroground.config import from_dict
    from zeroground.train.config import TrainConfig
    from zeroground.train.loop import CHECKPOINT_FILE, train

    from zeroground.train.loop import DONE_FILE

    if resume and (Path(out) / DONE_FILE).is_file():
        return str(Path(out) / "model")  # finished before the restart
    cfg = from_dict(TrainConfig, config)
    # a retried job (its worker was killed) continues from its own last checkpoint
    resume = resume or (Path(out) / CHECKPOINT_FILE).exists()
    model = train(cfg, out, resume=resume, progress=False, log=None)
    from zeroground.io import atomic_write_text

    atomic_write_text(Path(out) / DONE_FILE, "model complete\n")
    return str(model)


SWEEP_FILE = "sweep.json"


def load_sweep(path: str | Path) -> list[dict[str, Any]]:
    """A sweep file: a YAML list of override mappings (dotted keys, optional ``name``)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ParallelTrainingError(f"sweep file not found: {path}")
    try:
        items = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParallelTrainingError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(items, list) or not items:
        raise ParallelTrainingError(f"{path}: expected a non-empty YAML list of override mappings, e.g. "
                                    "[{name: lr1, train.lr: 0.001}, {name: lr3, train.lr: 0.003}]")
    return items


def _final_row(run: Path) -> dict[str, Any]:
    import csv

    from zeroground.train.loop import METRICS_FILE

    rows = list(csv.DictReader(open(run / METRICS_FILE))) if (run / METRICS_FILE).is_file() else []
    out: dict[str, Any] = {}
    for k, v in (rows[-1] if rows else {}).items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            out[k] = v
    return out


def run_sweep(base: dict[str, Any], overrides: Sequence[dict[str, Any]], out: str | Path, *,
              engine: str = "ray", address: str | None = None, resume: bool = False) -> list[dict[str, Any]]:
    """Train one run per override (``out/<name>``), side by side on Ray by default; returns
    and writes (``out/sweep.json``) one row per run: name, overrides, model directory and the
    last epoch's logged figures (loss, and validation metrics when the config has a val set).
    ``resume``: finished runs are kept, started ones continue from their checkpoints."""
    import json

    from zeroground.io import atomic_write_text
    from zeroground.train.loop import CHECKPOINT_FILE

    out = Path(out)
    jobs = sweep_jobs(base, overrides, out)
    for fn, kw in jobs:
        if not resume and (Path(kw["out"]) / CHECKPOINT_FILE).exists():
            raise ParallelTrainingError(f"{kw['out']} already holds a training run: pass --resume {out} "
                                        "to continue the sweep, or pick a new --out")
        kw["resume"] = resume
    threads = int((base.get("train") or {}).get("num_threads") or 1)
    models = run_trainings(jobs, engine=engine, num_threads=threads, address=address)
    rows = []
    for item, (fn, kw), model in zip(overrides, jobs, models):
        rows.append({"name": Path(kw["out"]).name, "overrides": {k: v for k, v in item.items() if k != "name"},
                     "model": str(model), **_final_row(Path(kw["out"]))})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / SWEEP_FILE, json.dumps(rows, indent=2) + "\n")
    return rows


def sweep_jobs(base: dict[str, Any], overrides: Sequence[dict[str, Any]], out: str | Path) -> list[Job]:
    """One training job per override dict (dotted keys, e.g. ``train.seed: 3``; an optional
    ``name`` names the run folder ``out/<name>``, default ``out/run<i>``)."""
    import copy

    from zeroground.config import apply_overrides

    jobs: list[Job] = []
    names: set[str] = set()
    for i, item in enumerate(overrides):
        if not isinstance(item, dict):
            raise ParallelTrainingError(f"sweep entry {i} must be a mapping of dotted keys to values, found {item!r}")
        item = dict(item)
        name = str(item.pop("name", f"run{i}"))
        if name in names:
            raise ParallelTrainingError(f"sweep entry {i}: run name {name!r} is used twice")
        names.add(name)
        cfg = apply_overrides(copy.deepcopy(base), {str(k): v for k, v in item.items()})
        jobs.append((_train_job, {"config": cfg, "out": str(Path(out) / name)}))
    return jobs
