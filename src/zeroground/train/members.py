"""Ensembles and bagging as part of training: ``train.ensemble`` members, ``train.bagging`` draws.

Member k of a run is the same recipe with seed ``train.seed + k``; with ``train.bagging``
it also trains on its own pseudo-label draw (:func:`draw_path`). Each member is an
ordinary training run in ``RUN_DIR/member_<k>`` (checkpointed, resumable), so members can
run anywhere -- one after another here, or as separate tasks (:func:`train_member` is the
unit of work; :func:`member_jobs` makes them jobs of :func:`zeroground.train.parallel.run_trainings`,
``engine="ray"``: one process per member) -- and :func:`join_members` joins them into
``RUN_DIR/model``. With one member the run *is* the member: ``RUN_DIR`` itself, as
``zeroground train`` always wrote.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Callable

from zeroground.train.config import TrainConfig
from zeroground.train.data import TrainingDataError
from zeroground.train.loop import DONE_FILE  # written after a member's model directory is complete


def draw_path(path: str | Path, k: int) -> Path:
    """Pseudo-label draw ``k`` of an annotation file: the file itself for k = 0, else
    ``<stem>.draw<k><suffix>`` beside it (``psvl.json`` → ``psvl.draw2.json``)."""
    path = Path(path)
    return path if k == 0 else path.with_name(f"{path.stem}.draw{k}{path.suffix}")


def member_dir(out: str | Path, cfg: TrainConfig, k: int) -> Path:
    return Path(out) if cfg.train.ensemble == 1 else Path(out) / f"member_{k}"


def check_members(cfg: TrainConfig) -> None:
    if cfg.train.ensemble < 1:
        raise TrainingDataError(f"train.ensemble must be >= 1, found {cfg.train.ensemble}")


def member_config(cfg: TrainConfig, k: int) -> TrainConfig:
    """The training config of member ``k``: seed + k, and its own draw when bagging."""
    check_members(cfg)
    if not 0 <= k < cfg.train.ensemble:
        raise TrainingDataError(f"member {k} does not exist: train.ensemble is {cfg.train.ensemble}")
    data = cfg.data
    if cfg.train.bagging and k > 0:
        from zeroground.pseudo.label import vectors_path_for

        draw = draw_path(data.train_annotations, k)
        if not draw.is_file():
            raise TrainingDataError(
                f"train.bagging: member {k} trains on {draw}, which does not exist; write it with "
                f"`zeroground pseudo-label --seed <seed + {k}> --out {draw}` (zeroground fit does this)")
        data = dataclasses.replace(data, train_annotations=str(draw),
                                   query_vectors=str(vectors_path_for(draw)) if data.query_vectors else None)
    return dataclasses.replace(cfg, data=data, train=dataclasses.replace(cfg.train, seed=cfg.train.seed + k))


def member_done(out: str | Path, cfg: TrainConfig, k: int) -> bool:
    return (member_dir(out, cfg, k) / DONE_FILE).is_file()


def train_member(cfg: TrainConfig, member_index: int, out: str | Path, *, resume: bool = False,
                 progress: bool = True, log: Callable[[str], None] | None = print,
                 stop_after_steps: int | None = None) -> Path:
    """Train member ``member_index`` of ``cfg`` in its run directory; returns its model directory.

    ``resume``: a finished member is kept, a started one continues from its checkpoint,
    an absent one starts (what ``fit`` does after a kill)."""
    from zeroground.io import atomic_write_text
    from zeroground.train.loop import CHECKPOINT_FILE, train

    run = member_dir(out, cfg, member_index)
    if resume and (run / DONE_FILE).is_file():
        return run / "model"
    mcfg = member_config(cfg, member_index)
    started = (run / CHECKPOINT_FILE).is_file()
    model = train(mcfg, run, resume=resume and started, progress=progress, log=log,
                  stop_after_steps=stop_after_steps)
    atomic_write_text(run / DONE_FILE, "model complete\n")
    return model


def load_run_config(out: str | Path) -> TrainConfig:
    """The resolved config a run directory was started with (``RUN_DIR/config.yaml``)."""
    from zeroground.config import load_config

    path = Path(out) / "config.yaml"
    if not path.is_file():
        raise TrainingDataError(f"cannot resume: {path} does not exist")
    return load_config(path, TrainConfig)


def _member_job(cfg: TrainConfig, member_index: int, out: str, resume: bool, progress: bool = False) -> str:
    """One member as a job of :func:`zeroground.train.parallel.run_trainings` (a Ray task): a
    retried job -- its worker was killed -- continues from the member's own last checkpoint."""
    from zeroground.train.loop import CHECKPOINT_FILE

    started = (member_dir(out, cfg, member_index) / CHECKPOINT_FILE).is_file()
    return str(train_member(cfg, member_index, out, resume=resume or started, progress=progress, log=None))


def member_jobs(cfg: TrainConfig, out: str | Path, *, resume: bool = False, progress: bool = False) -> list:
    """One :data:`zeroground.train.parallel.Job` per member of ``cfg``, in member order; the
    same per-member work :func:`train_member` does (seed + k, its own draw when bagging)."""
    from zeroground.train.loop import CHECKPOINT_FILE

    check_members(cfg)
    taken = [k for k in range(cfg.train.ensemble) if (member_dir(out, cfg, k) / CHECKPOINT_FILE).exists()]
    if taken and not resume:  # what train() would say, before any worker starts
        raise TrainingDataError(f"{member_dir(out, cfg, taken[0])} already holds a training run: pass "
                                f"--resume {out} to continue it, or pick a new --out")
    for k in range(cfg.train.ensemble):
        member_config(cfg, k)  # a missing bagging draw fails here, not in a worker
    _start_run(cfg, Path(out))
    return [(_member_job, {"cfg": cfg, "member_index": k, "out": str(out), "resume": resume, "progress": progress})
            for k in range(cfg.train.ensemble)]


def _start_run(cfg: TrainConfig, out: Path) -> None:
    if cfg.train.ensemble > 1:  # the members' configs are in member_<k>/; this is the whole run's
        from zeroground.config import save_config

        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")


def join_members(cfg: TrainConfig, out: str | Path, members: list[str | Path]) -> Path:
    """The run's model from its trained members: the member itself (one), else ``out/model``,
    an ensemble directory of them."""
    if cfg.train.ensemble == 1:
        return Path(members[0])
    from zeroground.model.ensemble import save_ensemble_dir

    target = Path(out) / "model"
    if target.exists():
        shutil.rmtree(target)
    return save_ensemble_dir(target, [Path(m) for m in members])


def train_ensemble(cfg: TrainConfig, out: str | Path, *, resume: bool = False, progress: bool = True,
                   log: Callable[[str], None] | None = print,
                   on_member: Callable[[int], None] | None = None,
                   engine: str = "sequential", address: str | None = None) -> Path:
    """Train every member of ``cfg`` (``train.ensemble``), then join them: ``out/model``.

    ``engine="ray"``: the members run side by side as Ray tasks, one process each with
    ``train.num_threads`` threads (:func:`zeroground.train.parallel.run_trainings`; a local
    cluster on all cores unless ``address``); the same members as one after the other."""
    check_members(cfg)
    out = Path(out)
    if engine not in ("sequential", "local"):
        from zeroground.train.parallel import run_trainings

        if log is not None:
            log(f"training {cfg.train.ensemble} member(s) as {engine} tasks")
        members = run_trainings(member_jobs(cfg, out, resume=resume), engine=engine,
                                num_threads=cfg.train.num_threads or 1, address=address)
        return join_members(cfg, out, members)
    _start_run(cfg, out)
    members = []
    for k in range(cfg.train.ensemble):
        if on_member is not None:
            on_member(k)
        members.append(train_member(cfg, k, out, resume=resume, progress=progress, log=log))
    return join_members(cfg, out, members)


def estimated_cost(cfg: TrainConfig, member_index: int) -> float:
    """A rough relative cost of training member ``member_index``: epochs × training items ×
    model parameters. Only orders jobs (longest first); nothing trained depends on it."""
    import json

    from zeroground.model.architectures import build_model

    mcfg = member_config(cfg, member_index)
    try:
        items = len(json.loads(Path(mcfg.data.train_annotations).read_text()))
    except (OSError, ValueError, TypeError):
        items = 1
    params = sum(p.numel() for p in build_model(cfg.model).parameters())
    return float(cfg.train.epochs) * items * params
