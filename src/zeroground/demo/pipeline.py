"""The ``make demo`` job: pixels → CLIP features → pseudo-labels → trained models → table.

Everything runs offline on a generated world (``zeroground.data.synthetic``) with
the tiny CLIP shipped in ``zeroground/assets/tiny_clip``:

1. render unlabelled ``train`` videos and held-out ``test`` videos to mp4;
2. extract CLIP frame features of all of them (``zeroground.features.extract``);
3. pseudo-label the train videos with both methods (``zeroground.pseudo``) — the
   train split's true spans are never read here;
4. train one grounding model per method (PSVL: token queries, LFVMR: CLIP-space
   queries) and, as an upper bound, the same model on the train split's true spans --
   every ensemble member of every row as one pool of trainings
   (:func:`zeroground.train.fit.fit_many`; with Ray, one process per member on all cores);
5. evaluate all of them, the no-training baselines and the published training-free
   rules (TFVTG without its LLM, TAG) on the held-out captions of the held-out videos;
   print one table, write ``results.json`` and a timeline PNG.

The test annotations are read only in step 5 (and by the ``prior`` row, which is the
bias *ceiling*: the most common test span, computed from the test labels themselves).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from zeroground.data.synthetic.world import WorldConfig
from zeroground.demo.evaluation import other_readout, predict_demo_model, predict_with_readout
from zeroground.errors import ZerogroundError

METRIC_KEYS = ("R1@0.3", "R1@0.5", "R1@0.7", "mIoU")
BASELINES = ("random", "prior", "clip_training_free", "tfvtg", "tag")
TRAINING_FREE = ("tfvtg", "tag")  # the published training-free rules (zeroground.ground.tfvtg / .tag)
TRAINED = ("psvl", "lfvmr", "lfvmr_psvlnet", "supervised")


class DemoError(ZerogroundError, RuntimeError):
    """A step of the demo failed; the message names the step."""


def shipped_tiny_clip() -> Path:
    """The tiny CLIP trained by ``scripts/train_tiny_clip.py`` and shipped with the package."""
    return Path(__file__).resolve().parents[1] / "assets" / "tiny_clip"


DEFAULT_RECIPES = {"psvl": "demo_psvl", "lfvmr": "demo_lfvmr", "lfvmr_psvlnet": "demo_lfvmr_psvlnet",
                   "supervised": "demo_supervised"}


@dataclass
class DemoSetup:
    """What is demo-specific: the generated world, its size, and which recipe each row fits
    (written as ``demo_out/demo_config.yaml``). How a model is made lives in the recipes
    (``configs/recipes/demo_*.yaml``)."""

    seed: int = 0
    train_videos: int = 120
    test_videos: int = 40
    corpus_videos: int = 300  # clip_train timelines whose captions form the unpaired text corpus
    feature_fps: float = 2.0
    clip: str = ""  # CLIP folder; "" = the shipped tiny CLIP
    methods: list[str] = field(default_factory=lambda: list(BASELINES + TRAINED))
    # Row name -> recipe `fit` follows for it (a shipped name or a YAML file).
    recipes: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_RECIPES))
    # Rows trained on the train split's true spans (`fit --annotations`): the upper bound.
    labelled: list[str] = field(default_factory=lambda: ["supervised"])
    # Recipe fields changed for one row, e.g. {"psvl": {"train.epochs": 30}} (configs/demo_quick.yaml).
    recipe_changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    plot_queries: int = 4
    # Extra rows with the *other* span read-out of the same trained models (a diagnostic):
    # "<method>_attention" when the model reads spans by regression, else "<method>_regression".
    attention_readout: bool = True
    world: WorldConfig = field(default_factory=WorldConfig)


@dataclass
class DemoResult:
    out: Path
    rows: list[dict[str, Any]]
    seconds: dict[str, float]
    results_json: Path
    figure: Path | None


def default_config_path() -> Path:
    return Path(__file__).resolve().parents[3] / "configs" / "demo_default.yaml"


def load_demo_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> DemoSetup:
    """Read a demo setup; ``None`` means the built-in defaults (== configs/demo_default.yaml)."""
    from zeroground.config import apply_overrides, from_dict, load_config, to_dict

    if path is None:
        return from_dict(DemoSetup, apply_overrides(to_dict(DemoSetup()), overrides), where="demo config")
    return load_config(path, DemoSetup, overrides)


# --------------------------------------------------------------------------- steps


def write_corpus(path: Path, n_videos: int, seed: int, cfg: WorldConfig) -> Path:
    """The unpaired text corpus for PSVL's verb statistics: captions of ``clip_train``
    timelines (planned, not rendered; no video of the demo is described by it)."""
    from zeroground.data.synthetic import SPLITS
    from zeroground.data.synthetic.world import plan_video
    from zeroground.io import atomic_write_text

    sentences = set()
    for i in range(n_videos):
        plan = plan_video(f"clip_train_{i:04d}", np.random.default_rng([seed, SPLITS["clip_train"], i]), cfg, False)
        sentences.update(c for ev in plan.events for c in ev.captions)
    return atomic_write_text(path, "\n".join(sorted(sentences)) + "\n")


def _log(msg: str, echo: Callable[[str], None]) -> None:
    echo(f"[demo] {msg}")


def run_demo(out: str | Path = "demo_out", cfg: DemoSetup | None = None, *, progress: bool = True,
             echo: Callable[[str], None] = print, engine: str = "sequential",
             address: str | None = None) -> DemoResult:
    """Run the whole demo into ``out``; returns the metric rows (also in ``out/results.json``).

    ``engine``: how the trained rows' members train (:func:`zeroground.train.parallel.run_trainings`):
    ``ray`` side by side, one process each (on all local cores, or the cluster at ``address``),
    ``sequential``/``local`` one after the other here, ``auto`` Ray when installed (what
    ``zeroground demo`` uses). The table is the same."""
    import torch

    from zeroground.config import save_config
    from zeroground.data.annotations import read_psvl_json
    from zeroground.data.synthetic import make_world
    from zeroground.features.clip import load_clip
    from zeroground.features.extract import extract
    from zeroground.features.store import FeatureStore
    from zeroground.io import atomic_write_json, atomic_write_text

    cfg = cfg or DemoSetup()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "demo_config.yaml")
    unknown = [m for m in cfg.methods if m not in BASELINE_ROWS and m not in cfg.recipes]
    if unknown:
        raise DemoError(f"unknown demo method(s) {unknown}; choose from {list(BASELINE_ROWS) + list(cfg.recipes)} "
                        "(or name a recipe for it under `recipes`)")
    from zeroground.train.recipe import load_recipe

    for method in cfg.methods:  # a recipe field that does not exist fails here, before any work
        if method not in BASELINE_ROWS:
            load_recipe(cfg.recipes[method], cfg.recipe_changes.get(method))
    from zeroground.train.parallel import resolve_engine

    engine = resolve_engine(engine)
    if engine not in ("sequential", "ray"):  # before any work
        raise DemoError(f"unknown engine {engine!r}; choose ray, local or auto")
    clip_path = Path(cfg.clip) if cfg.clip else shipped_tiny_clip()
    if not (clip_path / "config.json").exists():
        raise DemoError(f"tiny CLIP not found at {clip_path}: run `make tiny-clip` to train it")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()

    # 1. the world (reused when an earlier run in ``out`` made the very same one)
    fingerprint = json.dumps({"seed": cfg.seed, "train": cfg.train_videos, "test": cfg.test_videos,
                              "world": dataclasses.asdict(cfg.world), "fps": cfg.feature_fps,
                              "clip": str(clip_path)}, sort_keys=True)
    fp_file = out / "world_fingerprint.json"
    feats_path = out / "features.h5"
    reuse = fp_file.exists() and fp_file.read_text() == fingerprint and feats_path.exists()
    if not reuse:  # other videos: runs of the previous world are stale
        shutil.rmtree(out / "runs", ignore_errors=True)
    if reuse:
        _log("reusing the videos and features of the previous run in this folder (same world)", echo)
        train_split = _reload_split(out, "train")
        test_split = _reload_split(out, "test")
    else:
        fp_file.unlink(missing_ok=True)
        feats_path.unlink(missing_ok=True)
        _log(f"rendering {cfg.train_videos} unlabelled train videos and {cfg.test_videos} test videos", echo)
        workers = os.cpu_count() or 1
        train_split = make_world(out, "train", cfg.train_videos, seed=cfg.seed, cfg=cfg.world, workers=workers)
        test_split = make_world(out, "test", cfg.test_videos, seed=cfg.seed, cfg=cfg.world, workers=workers)
    corpus = write_corpus(out / "corpus.txt", cfg.corpus_videos, cfg.seed, cfg.world)
    seconds["world"] = time.perf_counter() - t0

    # 2. features
    t = time.perf_counter()
    _log(f"extracting CLIP features at {cfg.feature_fps} fps with {clip_path.name}", echo)
    report = extract(train_split.videos + test_split.videos, str(clip_path), feats_path, fps=cfg.feature_fps,
                     progress=progress)
    if report.failed:
        raise DemoError(f"feature extraction failed for {sorted(report.failed)}")
    atomic_write_text(fp_file, fingerprint)
    store = FeatureStore.open(feats_path)
    clip = load_clip(str(clip_path))
    seconds["extract"] = time.perf_counter() - t

    test_moments = read_psvl_json(test_split.annotations)

    # 3 + 4. the no-training rows; one `fit` per trained row (the train videos' features; their
    # true spans only for the labelled upper bound), all rows' members in one pool of trainings;
    # then every row on the held-out captions of the test videos
    records: dict[str, list] = {}
    t = time.perf_counter()
    torch.manual_seed(cfg.seed)

    def baseline_rows() -> None:  # in this process, while the Ray workers train (no model needed)
        for method in cfg.methods:
            if method in BASELINE_ROWS:
                tm = time.perf_counter()
                records[method] = BASELINE_ROWS[method](test_moments, store=store, clip=clip, seed=cfg.seed)
                seconds[method] = time.perf_counter() - tm

    trained = [m for m in cfg.methods if m not in BASELINE_ROWS]
    other_rows: dict[str, str] = {}  # method -> its row with the other span read-out

    def evaluate_row(method: str, model_dir: Path) -> None:  # as soon as its model is written
        tm = time.perf_counter()
        records[method] = predict_demo_model(model_dir, feats_path, test_split.annotations,
                                             out / "runs" / method / "test")
        if cfg.attention_readout:
            from zeroground.model import model_readout, read_model_config

            other = other_readout(model_readout(read_model_config(model_dir)[1]).span)
            other_rows[method] = f"{method}_{other}"
            records[other_rows[method]] = predict_with_readout(model_dir, store, test_moments, clip, other)
        seconds[method] = time.perf_counter() - tm

    tm = time.perf_counter()
    if trained:
        _log(f"fitting {', '.join(trained)} (members trained {'as Ray tasks' if engine == 'ray' else 'one after the other'})",
             echo)
    fit_rows(trained, cfg, out, train_split, feats_path, corpus, clip_path, progress=progress, echo=echo,
             engine=engine, address=address, alongside=baseline_rows, on_model=evaluate_row)
    seconds["fit"] = time.perf_counter() - tm
    order = [row for method in cfg.methods for row in (method, other_rows.get(method)) if row]
    records = {m: records[m] for m in order}
    seconds["train_eval"] = time.perf_counter() - t

    rows = [score_row(m, records[m]) for m in records]
    from zeroground.eval.predictions import write_predictions

    for m in records:
        write_predictions(out / "predictions" / f"{m}.jsonl", records[m])
    seconds["total"] = time.perf_counter() - t0
    results = atomic_write_json(out / "results.json", {
        "rows": rows,
        "queries": len(test_moments),
        "test_videos": cfg.test_videos,
        "train_videos": cfg.train_videos,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "engine": engine,
    })
    fig = None
    if cfg.plot_queries > 0:
        fig = plot_timelines(out / "timelines.png", test_split.plans, test_moments, records,
                             [m for m in ("clip_training_free", *TRAINING_FREE, *TRAINED) if m in records],
                             n_queries=cfg.plot_queries, seed=cfg.seed)
    return DemoResult(out, rows, seconds, results, fig)


# --------------------------------------------------------------------------- pieces


def fit_rows(methods: list[str], cfg: DemoSetup, out: Path, train_split, features: Path, corpus: Path,
             clip_path: Path, *, progress: bool, echo: Callable[[str], None], engine: str = "sequential",
             address: str | None = None, alongside: Callable[[], Any] | None = None,
             on_model: Callable[[str, Path], Any] | None = None) -> dict[str, Path]:
    """``zeroground.fit`` of each trained row into ``out/runs/<method>``, all rows' members trained
    as one pool (:func:`zeroground.train.fit.fit_many`); returns each row's model directory.
    ``on_model(method, model_dir)`` is called as each row's model is written (under Ray while
    other rows still train).

    A run directory left by an earlier demo with another recipe (or other recipe changes)
    is started over; one of this very recipe resumes where it stopped."""
    from zeroground.train.fit import FitRun, RunDirTaken, check_run_dir, fit_many
    from zeroground.train.recipe import load_recipe

    runs = []
    for method in methods:
        recipe = load_recipe(cfg.recipes[method], cfg.recipe_changes.get(method))
        labels = train_split.annotations if method in cfg.labelled else None
        run = FitRun(list(train_split.videos), recipe, str(clip_path), out / "runs" / method, features=features,
                     corpus=corpus, annotations=labels)
        try:
            check_run_dir(run)
        except RunDirTaken:
            shutil.rmtree(run.out)
        runs.append(run)
    on_result = None if on_model is None else (lambda i, result: on_model(methods[i], result.model))
    results = fit_many(runs, engine=engine, address=address, progress=progress, echo=echo, alongside=alongside,
                       on_result=on_result)
    return {m: r.model for m, r in zip(methods, results)}


def _random_row(moments, *, seed: int, **_) -> list:
    from zeroground.eval.baselines import baseline

    return baseline("random", moments, seed=seed)


def _prior_row(moments, **_) -> list:
    from zeroground.eval.baselines import baseline

    return baseline("prior", moments)


def _clip_training_free_row(moments, *, store, clip, **_) -> list:
    from zeroground.ground.training_free import clip_training_free

    return clip_training_free(store, moments, clip, top_k=1)


def _training_free_row(name: str) -> Callable[..., list]:
    def row(moments, *, store, clip, **_) -> list:
        """A published training-free rule (Charades-STA constants: the demo's videos are 30-60 s)
        on the same CLIP features and text embeddings as ``clip_training_free``; top-1 first."""
        from zeroground.ground.training_free import training_free_rows

        return training_free_rows(store, moments, clip, methods=(name,), setting="charades")[name]

    return row


#: The no-training rows, by name: ``(test moments, *, store, clip, seed) -> prediction records``.
BASELINE_ROWS: dict[str, Callable[..., list]] = {
    "random": _random_row, "prior": _prior_row, "clip_training_free": _clip_training_free_row,
    "tfvtg": _training_free_row("tfvtg"), "tag": _training_free_row("tag"),
}


def score_row(method: str, records: list) -> dict[str, Any]:
    from zeroground.eval.metrics import evaluate_predictions

    metrics = evaluate_predictions(records)
    return {"method": method, **{k: round(float(metrics[k]), 4) for k in METRIC_KEYS}}


def _reload_split(out: Path, split: str):
    from zeroground.data.synthetic import WorldSplit, load_plans

    world = out / "annotations" / f"{split}_world.json"
    plans = load_plans(world)
    return WorldSplit(split, [out / "videos" / f"{p.video}.mp4" for p in plans],
                      out / "annotations" / f"{split}.json", world, plans)


# --------------------------------------------------------------------------- output


def results_table(rows: list[dict[str, Any]]):
    """A Rich table of the rows (percentages, best trained method in bold)."""
    from rich.table import Table

    table = Table(title="zeroground demo: held-out captions of held-out videos (R1 and mIoU, %)")
    table.add_column("method")
    for k in METRIC_KEYS:
        table.add_column(k, justify="right")
    for row in rows:
        m = row["method"]
        kind = ("training-free, no LLM" if m == "tfvtg" else "training-free" if m == "tag"
                else "baseline" if m in BASELINES else "upper bound" if m.startswith("supervised") else "")
        if m.endswith("_attention"):
            kind = (kind + ", " if kind else "") + "span from attention"
        elif m.endswith("_regression"):
            kind = (kind + ", " if kind else "") + "span from regression head"
        name = row["method"] + (f" [dim]({kind})[/]" if kind else "")
        table.add_row(name, *(f"{100 * row[k]:.1f}" for k in METRIC_KEYS))
    return table


def plot_timelines(path: Path, plans, moments, records: dict[str, list], methods: list[str], *,
                   n_queries: int = 4, seed: int = 0) -> Path:
    """For a few test queries: a frame strip, the true span and each method's top-1 span."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zeroground.data.synthetic.render import render_frame
    from zeroground.io import atomic_path

    by_video = {p.video: p for p in plans}
    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(len(moments), size=min(n_queries, len(moments)), replace=False).tolist())
    colours = {"clip_training_free": "tab:gray", "tfvtg": "tab:pink", "tag": "tab:brown", "psvl": "tab:blue",
               "lfvmr": "tab:purple", "lfvmr_psvlnet": "tab:orange", "supervised": "tab:green"}
    fig, axes = plt.subplots(len(picks), 1, figsize=(10, 2.3 * len(picks)), squeeze=False)
    for ax, qi in zip(axes[:, 0], picks):
        m = moments[qi]
        plan = by_video[m.video]
        n_strip = 10
        times = (np.arange(n_strip) + 0.5) * plan.duration / n_strip
        strip = np.concatenate([render_frame(plan, int(t * plan.fps), scale=1, noise_std=0) for t in times], axis=1)
        ax.imshow(strip, extent=(0, plan.duration, 1.0, 1.0 + len(methods) + 1.5), aspect="auto")
        ax.barh(0.5, m.end - m.start, left=m.start, height=0.6, color="black", label="true span")
        for j, name in enumerate(methods):
            s, e = records[name][qi].pred[0]
            ax.barh(-0.5 - j, e - s, left=s, height=0.6, color=colours.get(name, "tab:red"), label=name)
        ax.set_xlim(0, plan.duration)
        ax.set_ylim(-len(methods) - 0.2, 1.0 + len(methods) + 1.5)
        ax.set_yticks([0.5] + [-0.5 - j for j in range(len(methods))], ["true"] + methods, fontsize=8)
        ax.set_title(f"{m.video}: \"{m.sentence}\"", fontsize=9)
        ax.set_xlabel("seconds", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path
