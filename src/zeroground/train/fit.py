"""``zeroground fit``: unlabeled videos → a ready model directory, in one call.

    videos ──extract──▶ RUN_DIR/features.h5 ──pseudo-label──▶ RUN_DIR/pseudo/<method>[.draw<k>].json
           ──train members──▶ RUN_DIR/train/[member_<k>/] ──ensemble──▶ RUN_DIR/model

Every stage keeps its output in RUN_DIR and is skipped when that output is complete;
each writes atomically (features per video, pseudo-labels per draw, training per
epoch checkpoint), so a run killed at any point and started again with the same
arguments resumes where it stopped and ends with the model an uninterrupted run makes.
``RUN_DIR/recipe.yaml`` holds the resolved recipe; a run directory refuses another one.

Every input is checked before any work: videos or features exist, the recipe's fields
exist, the encoder's dimension fits the recipe, a PSVL recipe has its text corpus.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from zeroground.config import to_dict
from zeroground.errors import ZerogroundError
from zeroground.io import atomic_path, atomic_write_text
from zeroground.train.config import DataConfig, TrainConfig
from zeroground.train.members import draw_path
from zeroground.train.recipe import ENCODER, LoadedRecipe, changed, load_recipe

RECIPE_FILE = "recipe.yaml"
FEATURES_FILE = "features.h5"
MODEL_DIR = "model"


class FitError(ZerogroundError, ValueError):
    """``fit`` cannot start with these inputs; the message says what to change."""


class RunDirTaken(FitError):
    """The run directory holds a fit run of another recipe, encoder or annotations."""


@dataclass
class FitResult:
    run_dir: Path
    model: Path
    features: Path
    train_files: list[Path]
    skipped: list[str]  # stages whose output was already complete


@dataclass
class _Plan:
    recipe: LoadedRecipe
    encoder: str
    dim: int
    video_paths: list[Path]  # to extract (empty when starting from features)
    video_ids: list[str] | None  # subset of the store to fit on (None: all)
    features: Path
    corpus: str | None
    annotations: Path | None


def _needs_text_encoder(loaded: LoadedRecipe, annotations: Path | None) -> bool:
    r = loaded.recipe
    return (r.model.query_encoder != "tokens" or r.train.word_vectors == ENCODER
            or (annotations is None and r.pseudo.method == "psvl"))


def _plan(videos: Sequence[str | Path], recipe: str | Path | LoadedRecipe, encoder: str, out: Path,
          features: str | Path | None, corpus: str | Path | None, annotations: str | Path | None,
          overrides: dict[str, Any] | None) -> _Plan:
    """Check every input; raise a clear error before any work."""
    from zeroground.features.extract import ExtractError, find_videos
    from zeroground.pseudo.label import PSEUDO_LABELERS

    loaded = recipe if isinstance(recipe, LoadedRecipe) else load_recipe(recipe, overrides)
    r = loaded.recipe
    if annotations is None and r.pseudo.method not in PSEUDO_LABELERS:
        raise FitError(f"recipe {loaded.name}: unknown pseudo.method {r.pseudo.method!r}; "
                       f"choose one of {sorted(PSEUDO_LABELERS)}")
    if annotations is not None and not Path(annotations).is_file():
        raise FitError(f"annotation file not found: {annotations}")
    try:
        paths = find_videos(videos) if videos else []
    except ExtractError as exc:
        raise FitError(str(exc)) from None
    if videos and not paths:
        raise FitError(f"no video files found in {', '.join(map(str, videos))}")
    if features is None and not paths:
        raise FitError("no videos given: pass video files or folders, or --features FEATURES.h5 to start from features")
    from zeroground.features.store import FeatureStore

    if features is not None:
        features = Path(features)
        if not features.exists():
            raise FitError(f"feature store not found: {features}")
        store = FeatureStore.open(features)
        dim = store.dim
        ids = [p.stem for p in paths]
        if ids:
            missing = [v for v in ids if v not in store]
            if missing:
                raise FitError(f"{features} has no features of {len(missing)} given video(s): {missing[:5]}")
    else:
        features, dim = out / FEATURES_FILE, None
    if dim is None or _needs_text_encoder(loaded, annotations):
        from zeroground.features.clip import load_clip

        enc_dim = load_clip(encoder).dim
        if dim is not None and enc_dim != dim:
            raise FitError(f"encoder {encoder} embeds in {enc_dim}-d, but {features} holds {dim}-d features; "
                           "the text and video sides of the model must share one space")
        dim = enc_dim
    if changed(loaded.changes, "model.video_dim") and r.model.video_dim != dim:
        raise FitError(f"recipe {loaded.name} is for {r.model.video_dim}-d video features, but encoder "
                       f"{encoder} gives {dim}-d; pick a recipe for this encoder or override model.video_dim")
    corpus = str(corpus) if corpus is not None else r.pseudo.corpus
    needs_corpus = annotations is None and r.pseudo.method == "psvl" and r.pseudo.psvl.verb_source in ("corpus", "clip")
    if needs_corpus and not corpus:
        raise FitError(f"recipe {loaded.name} draws PSVL verbs from a text corpus: pass --corpus SENTENCES.txt "
                       "(one sentence per line, not describing these videos)")
    if corpus and not Path(corpus).exists():
        raise FitError(f"corpus not found: {corpus}")
    extract_from = paths if features == out / FEATURES_FILE else []
    return _Plan(loaded, str(encoder), int(dim), extract_from, [p.stem for p in paths] or None, Path(features),
                 corpus, Path(annotations) if annotations is not None else None)


def _resolved(plan: _Plan) -> dict[str, Any]:
    return {"recipe": plan.recipe.name, "encoder": plan.encoder, "changes": plan.recipe.changes,
            "annotations": str(plan.annotations) if plan.annotations else None,
            "resolved": to_dict(plan.recipe.recipe)}


def _claim_run_dir(out: Path, plan: _Plan, write: bool = True) -> None:
    """Write RUN_DIR/recipe.yaml, or check that the run already there is this one."""
    text = yaml.safe_dump(_resolved(plan), sort_keys=False)
    path = out / RECIPE_FILE
    if path.is_file():
        if yaml.safe_load(path.read_text()) != yaml.safe_load(text):
            raise RunDirTaken(f"{out} holds a fit run with another recipe, encoder or annotations ({path}); "
                           "pick a new --out, or delete it to start over")
        return
    if write:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)


def check_run_dir(run: "FitRun") -> None:
    """Raise :class:`RunDirTaken` when ``run.out`` holds a fit run of another recipe, encoder
    or annotations (what :func:`fit` would refuse); write nothing."""
    out = Path(run.out)
    plan = _plan(run.videos, run.recipe, str(run.encoder), out, run.features, run.corpus, run.annotations,
                 run.overrides)
    _claim_run_dir(out, plan, write=False)


def train_config(plan: _Plan, train_file: Path, query_vectors: Path | None) -> TrainConfig:
    """The training config of a fit run: the recipe's model, read-out and training with the run's
    data, dimensions and encoder filled in (the text encoder of a CLIP-query model, unless the
    recipe names one, is the run's encoder)."""
    r = plan.recipe.recipe
    model = dataclasses.replace(r.model, video_dim=plan.dim, clip_dim=plan.dim)
    train = dataclasses.replace(r.train)
    if model.query_encoder != "tokens" and train.text_encoder in (None, ENCODER):
        train.text_encoder = plan.encoder
    if train.word_vectors == ENCODER:
        train.word_vectors = plan.encoder
    data = DataConfig(train_annotations=str(train_file), video_features=str(plan.features),
                      format="psvl" if plan.annotations is None else "auto",
                      query_vectors=str(query_vectors) if query_vectors is not None else None)
    return TrainConfig(model=model, readout=dataclasses.replace(r.readout), data=data, train=train)


def _draws(plan: _Plan) -> int:
    t = plan.recipe.recipe.train
    return t.ensemble if t.bagging else 1


def _pseudo_labels(plan: _Plan, out: Path, *, clip: Any, progress: bool, say: Callable[[str], None],
                   skipped: list[str], engine: str = "local") -> list[Path]:
    """Pseudo-label draws 0..n-1 (draw k with seed pseudo.seed + k); complete draws are kept."""
    from zeroground.features.store import FeatureStore
    from zeroground.pseudo.label import pseudo_label

    r = plan.recipe.recipe
    store = FeatureStore.open(plan.features)
    vids = plan.video_ids or store.video_ids
    durations = store.durations()
    first = out / "pseudo" / f"{r.pseudo.method}.json"
    files = []
    n = _draws(plan)
    verb_stats = None  # PSVL's corpus statistics: parsed once, shared by every draw
    for k in range(n):
        target = draw_path(first, k)
        done = target.with_name(target.name + ".done")
        files.append(target)
        if done.is_file():
            skipped.append(f"pseudo-labels {target.name}")
            continue
        say(f"pseudo-labels: {r.pseudo.method}, draw {k + 1}/{n} of {len(vids)} videos")
        cfg = dataclasses.replace(r.pseudo, seed=r.pseudo.seed + k, corpus=plan.corpus, fps=store.fps,
                                  clip=plan.encoder if r.pseudo.method == "psvl" else r.pseudo.clip)
        if r.pseudo.method == "psvl" and verb_stats is None and cfg.corpus:
            from zeroground.pseudo.psvl import load_verb_stats

            verb_stats = load_verb_stats(cfg.corpus, exclude_verbs=cfg.psvl.exclude_verbs, progress=progress)
        pseudo_label(r.pseudo.method, store, target, config=cfg, durations={v: durations[v] for v in vids},
                     videos=vids, clip_model=clip if r.pseudo.method == "psvl" else None, progress=progress,
                     engine=engine, verb_stats=verb_stats)
        atomic_write_text(done, "complete\n")
    return files


def _true_labels(plan: _Plan, out: Path, *, clip: Any, skipped: list[str]) -> tuple[Path, Path | None]:
    """Training on given true spans: the file as is, and for CLIP-query models the encoder's
    embeddings of its sentences ([N, D] .npy, in file order)."""
    import numpy as np

    from zeroground.data.annotations import read_annotations

    assert plan.annotations is not None
    if plan.recipe.recipe.model.query_encoder == "tokens":
        return plan.annotations, None
    target = out / "pseudo" / "labels.npy"
    if target.is_file():
        skipped.append("sentence embeddings")
        return plan.annotations, target
    from zeroground.train.data import moment_queries

    moments = read_annotations(plan.annotations)
    vectors = moment_queries(moments, plan.recipe.recipe.model.query_encoder, str(plan.annotations),
                             clip).astype(np.float32)  # [N, D]
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, vectors)
    return plan.annotations, target


@dataclass
class FitRun:
    """The arguments of one :func:`fit`, for :func:`fit_many`."""

    videos: Sequence[str | Path]
    recipe: str | Path | LoadedRecipe
    encoder: str | Path
    out: str | Path
    features: str | Path | None = None
    corpus: str | Path | None = None
    annotations: str | Path | None = None
    overrides: dict[str, Any] | None = None


@dataclass
class _Prepared:
    out: Path
    plan: _Plan
    say: Callable[[str], None]
    stage: Callable[[str], None]
    skipped: list[str]
    files: list[Path]
    cfg: TrainConfig | None  # None: the run's model is already complete


def fit(videos: Sequence[str | Path], recipe: str | Path | LoadedRecipe, encoder: str | Path, out: str | Path, *,
        features: str | Path | None = None, corpus: str | Path | None = None,
        annotations: str | Path | None = None, overrides: dict[str, Any] | None = None,
        progress: bool = True, echo: Callable[[str], None] | None = print, engine: str = "local",
        address: str | None = None) -> FitResult:
    """Unlabeled ``videos`` (files or folders) → ``out/model``, following ``recipe``.

    ``features``: start from this feature store instead of extracting (``videos``, if
    given, then name the store's videos to fit on). ``corpus``: the unpaired sentences
    PSVL draws its verbs from. ``annotations``: train on these true spans instead of
    pseudo-labels (an upper bound). ``overrides``: dotted recipe fields (``train.epochs``).
    ``engine="ray"``: extraction (Ray Data, shards merged into ``features.h5``), the
    pseudo-labels' per-video work and the members' trainings run on Ray -- the cluster at
    ``address`` or a local one on all cores, started once for the whole run."""
    run = FitRun(videos, recipe, encoder, out, features, corpus, annotations, overrides)
    return fit_many([run], engine=engine, address=address, progress=progress, echo=echo)[0]


def fit_many(runs: Sequence[FitRun], *, engine: str = "local", address: str | None = None,
             progress: bool = True, echo: Callable[[str], None] | None = print,
             alongside: Callable[[], Any] | None = None,
             on_result: Callable[[int, FitResult], Any] | None = None) -> list[FitResult]:
    """Several :func:`fit` runs whose trainings share one pool of workers.

    Every run's inputs are checked first; then each run's features and pseudo-labels are
    made in turn (``engine="ray"``: extraction and the pseudo-labels' per-video work on
    Ray); then the members of *all* runs are trained as one list of jobs of
    :func:`zeroground.train.parallel.run_trainings` (``engine="ray"``: one Ray task per
    member, ``train.num_threads`` threads each, on all local cores or the cluster at
    ``address``; one cluster for the whole call); last each run's model is written. Each
    member does the same work under every engine (its own seed and draw), so the models are
    the same. ``alongside()``: other work of this process, done while the workers train
    (local engine: before training). ``on_result(i, result)``: called in this process as
    soon as run ``i``'s model is written, while other runs' members may still train (under
    Ray the longest members start first). ``engine="auto"``: ray when installed."""
    from zeroground.train.parallel import resolve_engine

    engine = resolve_engine(engine)
    if engine not in ("sequential", "ray"):
        raise FitError(f"unknown engine {engine!r}; choose local or ray")
    if address and engine != "ray":
        raise FitError("--address belongs to --engine ray")
    plans = [(Path(r.out), _plan(r.videos, r.recipe, str(r.encoder), Path(r.out), r.features, r.corpus,
                                 r.annotations, r.overrides)) for r in runs]
    for out, plan in plans:
        _claim_run_dir(out, plan)
    if all((out / (MODEL_DIR + ".done")).is_file() and (out / MODEL_DIR).is_dir() for out, _ in plans):
        engine = "sequential"  # nothing to do: no cluster to start
    started = False
    if engine == "ray":
        from zeroground.features.ray_extract import init_ray

        started = init_ray(address)
    try:
        return _fit_many(plans, engine=engine, address=address, progress=progress, echo=echo, alongside=alongside,
                         on_result=on_result)
    finally:
        if started:
            import ray

            ray.shutdown()


def _fit_many(plans: list[tuple[Path, _Plan]], *, engine: str, address: str | None, progress: bool,
              echo: Callable[[str], None] | None, alongside: Callable[[], Any] | None,
              on_result: Callable[[int, FitResult], Any] | None = None) -> list[FitResult]:
    sequential = engine == "sequential"
    prepared = [_prepare(out, plan, progress=progress, echo=echo, engine="local" if sequential else engine)
                for out, plan in plans]
    results: dict[int, FitResult] = {}

    def finish(i: int, trained: Path | None) -> None:
        p = prepared[i]
        results[i] = _finish(p, trained) if trained is not None else FitResult(
            p.out, p.out / MODEL_DIR, p.plan.features, [], ["all"])
        if on_result is not None:
            on_result(i, results[i])

    todo = [i for i, p in enumerate(prepared) if p.cfg is not None]
    for i in todo:
        r = prepared[i].plan.recipe.recipe
        prepared[i].stage(f"training {r.train.ensemble} member(s)"
                          + (" on their own pseudo-label draws" if r.train.bagging else "")
                          + ("" if sequential else f" as {engine} tasks"))
    for i, p in enumerate(prepared):
        if p.cfg is None:
            finish(i, None)
    if todo:
        from zeroground.train.members import estimated_cost, join_members, member_jobs
        from zeroground.train.parallel import run_trainings

        jobs, owners, index = [], [], []
        for i in todo:
            p = prepared[i]
            mine = member_jobs(p.cfg, p.out / "train", resume=True, progress=progress and sequential)
            jobs += mine
            owners += [i] * len(mine)
            index += range(len(mine))
        if not sequential:
            # longest first (LPT): the pool's last minutes are short jobs side by side, not one
            # long job alone; each member's work and seed are its own, so the models are the same
            order = sorted(range(len(jobs)), key=lambda j: -estimated_cost(prepared[owners[j]].cfg, index[j]))
            jobs, owners, index = ([x[j] for j in order] for x in (jobs, owners, index))
        if echo is not None and not sequential:
            echo(f"[fit] {len(jobs)} member trainings of {len(todo)} run(s) as {engine} tasks")
        # a Ray task asks for as many CPUs as it uses threads; in this process train() sets its own
        threads = None if sequential else max(prepared[i].cfg.train.num_threads or 1 for i in todo)
        done: dict[int, Any] = {}  # job -> its model directory

        def finished(j: int, model: Any) -> None:
            done[j] = model
            p, k = prepared[owners[j]], index[j]
            p.say(f"member {k + 1}/{p.cfg.train.ensemble} (seed {p.cfg.train.seed + k}) trained"
                  f" ({len(done)}/{len(jobs)} of all runs)")
            mine = [m for m in range(len(jobs)) if owners[m] == owners[j]]
            if all(m in done for m in mine):  # the run's last member: its model now, while others train
                members = [done[m] for m in sorted(mine, key=lambda m: index[m])]
                finish(owners[j], join_members(p.cfg, p.out / "train", members))

        run_trainings(jobs, engine=engine, num_threads=threads, address=address, on_done=finished,
                      alongside=alongside)
    elif alongside is not None:
        alongside()
    return [results[i] for i in range(len(prepared))]


def _prepare(out: Path, plan: _Plan, *, progress: bool, echo: Callable[[str], None] | None,
             engine: str = "local") -> _Prepared:
    """The features and (pseudo-)labels stages of a claimed run directory; the training config."""
    from zeroground.pseudo.label import vectors_path_for

    r = plan.recipe.recipe
    skipped: list[str] = []
    steps = 4
    say_step = [0]

    def say(msg: str) -> None:
        if echo is not None:
            echo(f"[fit {plan.recipe.name}] {msg}")

    def stage(name: str) -> None:
        say_step[0] += 1
        say(f"({say_step[0]}/{steps}) {name}")

    final = out / MODEL_DIR
    if (out / (MODEL_DIR + ".done")).is_file() and final.is_dir():
        say(f"{final} is complete; nothing to do")
        return _Prepared(out, plan, say, stage, ["all"], [], None)

    stage("features")
    if plan.video_paths:
        if engine == "ray":
            from zeroground.features.ray_extract import extract_ray

            # shards in features.h5.shards/ (a rerun resumes from them), merged into features.h5
            report = extract_ray(plan.video_paths, plan.encoder, plan.features, fps=r.fps, merge=True,
                                 progress=progress)
        else:
            from zeroground.features.extract import extract

            report = extract(plan.video_paths, plan.encoder, plan.features, fps=r.fps, progress=progress)
        if report.failed:
            raise FitError(f"feature extraction failed for {sorted(report.failed)}: {report.failed}")
        if len(report.already_done) == len(plan.video_paths):
            skipped.append("features")
    else:
        say(f"using {plan.features}")
    clip = None
    if _needs_text_encoder(plan.recipe, plan.annotations):
        from zeroground.features.clip import load_clip

        clip = load_clip(plan.encoder)

    stage("pseudo-labels" if plan.annotations is None else "labels")
    if plan.annotations is None:
        files = _pseudo_labels(plan, out, clip=clip, progress=progress, say=say, skipped=skipped, engine=engine)
        # the seed LFVMR draws its queries from the feature store while training: no vectors file
        fixed_vectors = r.model.query_encoder != "tokens" and r.model.architecture != "lfvmr"
        vectors = vectors_path_for(files[0]) if fixed_vectors else None
    else:
        first, vectors = _true_labels(plan, out, clip=clip, skipped=skipped)
        files = [first]
    return _Prepared(out, plan, say, stage, skipped, files, train_config(plan, files[0], vectors))


def _finish(p: _Prepared, trained: Path) -> FitResult:
    """The model stage: the trained model (or ensemble) copied to ``RUN_DIR/model`` atomically."""
    out, final = p.out, p.out / MODEL_DIR
    p.stage("model")
    tmp = out / (MODEL_DIR + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(trained, tmp)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    atomic_write_text(out / (MODEL_DIR + ".done"), "complete\n")
    p.say(f"model written to {final}")
    return FitResult(out, final, p.plan.features, p.files, p.skipped)
