"""The ``make demo`` job: pixels → CLIP features → pseudo-labels → trained models → table.

Everything runs offline on a generated world (``zeroground.data.synthetic``) with
the tiny CLIP shipped in ``zeroground/assets/tiny_clip``:

1. render unlabelled ``train`` videos and held-out ``test`` videos to mp4;
2. extract CLIP frame features of all of them (``zeroground.features.extract``);
3. pseudo-label the train videos with both methods (``zeroground.pseudo``) — the
   train split's true spans are never read here;
4. train one grounding model per method (PSVL: token queries, LFVMR: CLIP-space
   queries) and, as an upper bound, the same model on the train split's true spans;
5. evaluate all of them, and the no-training baselines, on the held-out captions of
   the held-out videos; print one table, write ``results.json`` and a timeline PNG.

The test annotations are read only in step 5 (and by the ``prior`` row, which is the
bias *ceiling*: the most common test span, computed from the test labels themselves).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from zeroground.data.synthetic.world import WorldConfig, noun_vocabulary
from zeroground.errors import ZerogroundError
from zeroground.pseudo.lfvmr import LFVMRConfig
from zeroground.pseudo.proposals import ProposalConfig
from zeroground.pseudo.psvl import PSVLConfig

METRIC_KEYS = ("R1@0.3", "R1@0.5", "R1@0.7", "mIoU")
BASELINES = ("random", "prior", "clip_training_free")
TRAINED = ("psvl", "lfvmr", "supervised")


class DemoError(ZerogroundError, RuntimeError):
    """A step of the demo failed; the message names the step."""


def shipped_tiny_clip() -> Path:
    """The tiny CLIP trained by ``scripts/train_tiny_clip.py`` and shipped with the package."""
    return Path(__file__).resolve().parents[1] / "assets" / "tiny_clip"


@dataclass
class DemoModelConfig:
    """Size of the grounding model in the demo (the PSVL architecture, scaled down)."""

    num_segments: int = 32
    embed_dim: int = 64
    query_gru_hidden: int = 64
    video_gru_hidden: int = 64
    hidden: int = 64
    fusion_layers: int = 1
    nonlocal_layers: int = 1
    nonlocal_heads: int = 4
    dropout: float = 0.0
    clip_query_len: int = 4
    # ModelConfig.span_readout: spans read from the temporal attention (the run around its peak
    # with weight >= attention_ratio x peak), which localises better than the regression head
    # on this training budget. attention_ratio was chosen on the *train* pseudo-labels (mean
    # tIoU of the read-out against the pseudo spans; 1/3 best of 0.15-0.6), never on test.
    span_readout: str = "attention"
    attention_ratio: float = 1 / 3


@dataclass
class DemoTrainConfig:
    """Training budget of each grounding model."""

    epochs: int = 60
    batch_size: int = 32
    lr: float = 3e-3
    # OptimConfig.localization_loss_weight: SmoothL1 on [0, 1] coordinates is ~100x smaller than
    # the attention-guidance loss; x10 lets the regression head learn in a few dozen epochs.
    localization_loss_weight: float = 10.0
    # LFVMR: Lafite-style perturbation of the pseudo query vectors (trained on image vectors,
    # queried with text vectors). 0.5 rather than 0.1: R1@0.5 69.7 -> 80.0 on a development
    # world (seed 1; README, "The offline demo"), never on the reported test set.
    noise_level: float = 0.5
    seed: int = 0
    # One thread: a model this small gains little from two, and a second thread spinning on a
    # busy machine slowed an epoch from 1.5 s to 25 s in our runs.
    num_threads: int = 1
    # The pseudo-supervised models are `ensemble` runs each (PSVL: psvl_training.ensemble),
    # seeds seed, seed + 1, ..., read out as one with their attention averaged
    # (zeroground.model.ensemble): on the development world single models spread by up to
    # 12 R1@0.5 between seeds (LFVMR: 84.6 / 76.1 / 72.4). The supervised upper bound stays
    # one model (an ensemble would only raise the ceiling).
    ensemble: int = 3
    ensemble_methods: list[str] = field(default_factory=lambda: ["psvl", "lfvmr"])
    # Bagging: each ensemble member of these methods trains on its own pseudo-label draw
    # (pseudo-label seed = seed + k: other k-means starts, other verb draws), so the members'
    # label noise differs and averages out; member 0's draw is pseudo/<method>.json.
    bagging: list[str] = field(default_factory=lambda: ["psvl"])


@dataclass
class DemoPSVLTrainingConfig:
    """Where the token-query (``psvl``) model's recipe differs from the shared one above.

    Its pseudo-labels are noisier than LFVMR's (a wrong noun or verb, not just a looser
    span), and a word seen in few pseudo queries stays weak however often test sentences
    use it. Chosen on the development world (seed 1; README, "How the recipe was chosen")."""

    epochs: int = 90
    lr: float = 1e-3  # a third of the shared rate: steadier on noisy pairs (less seed-to-seed spread)
    dropout: float = 0.3  # ModelConfig.dropout of the aggregation blocks
    word_dropout: float = 0.1  # OptimConfig.word_dropout: words replaced by <UNK> while training
    # ModelConfig.word_vectors: word embeddings start at the demo CLIP's text embeddings of the
    # words (zeroground.model.word_vectors), so "cup" starts where "mug" does
    word_vectors: bool = True
    freeze_word_vectors: bool = False
    # OptimConfig.word_insertion: up to two <UNK> words inserted into each pseudo query while
    # training, since test sentences simplify to longer token lists ("put person ball room")
    # than the pseudo queries ("put ball")
    word_insertion: float = 0.5
    # OptimConfig.average_last_epochs: the saved weights are the mean of the last 30 epochs'
    average_last_epochs: int = 30
    # Members of PSVL's ensemble (train.ensemble is LFVMR's): bagged members (train.bagging)
    # disagree more than seed-only ones, and 5 beat 3 on both development worlds.
    ensemble: int = 5
    # ModelConfig.attention_ratio of this model (the shared model.attention_ratio is 1/3): the
    # averaged attention of PSVL's ensemble is broader than one model's -- its members disagree
    # more, and its pseudo-spans run longer than the events -- so its span is cut higher.
    attention_ratio: float = 0.5


@dataclass
class DemoConfig:
    """Everything that decides a demo run (written as ``demo_out/demo_config.yaml``)."""

    seed: int = 0
    train_videos: int = 120
    test_videos: int = 40
    corpus_videos: int = 300  # clip_train timelines whose captions form the unpaired text corpus
    feature_fps: float = 2.0
    clip: str = ""  # CLIP folder; "" = the shipped tiny CLIP
    methods: list[str] = field(default_factory=lambda: list(BASELINES + TRAINED))
    plot_queries: int = 4
    # Extra rows with the *other* span read-out of the same trained models (a diagnostic):
    # "<method>_attention" when model.span_readout is "regression", else "<method>_regression".
    attention_readout: bool = True
    world: WorldConfig = field(default_factory=WorldConfig)
    # Events of this world last 4-12 s of 30-60 s videos: proposals between 5 % and 40 % of a video.
    proposals: ProposalConfig = field(default_factory=lambda: ProposalConfig(
        num_clusters=6, min_len=0.05, max_len=0.4, max_proposals=12, max_atoms=2))
    # PSVL on this world (docs/methods.md §2; every choice made on the development world):
    # zero-shot tagging over the world's nouns (the tiny CLIP knows no others), the top tag per
    # frame, 1 noun and 1 verb per query (fewer wrong words); verbs are the corpus candidates
    # scored by CLIP on the event's frames (`verb_source: clip`; the paper's corpus-only verbs
    # cannot tell "pick up the cup" from "put down the cup", both events of one video here),
    # drawn 3 times per event so synonyms ("picks up" / "grabs" / "lifts") all occur; and only
    # the 4 pseudo-events per video with the most action evidence are kept (`keep_events`:
    # most of the ~12 proposals of a video are idle or walking stretches no sentence describes),
    # skipping proposals whose action goes on after them (`truncation_ratio`: the crouch that
    # starts a pick-up reads as "puts down" on its own).
    psvl: PSVLConfig = field(default_factory=lambda: PSVLConfig(
        nouns=noun_vocabulary(), queries_per_event=3, tag_top_k=1, num_nouns=1, num_verbs=1,
        verb_source="clip", verb_sampling="sample", keep_events=4, truncation_ratio=0.75))
    lfvmr: LFVMRConfig = field(default_factory=LFVMRConfig)
    model: DemoModelConfig = field(default_factory=DemoModelConfig)
    train: DemoTrainConfig = field(default_factory=DemoTrainConfig)
    psvl_training: DemoPSVLTrainingConfig = field(default_factory=DemoPSVLTrainingConfig)


@dataclass
class DemoResult:
    out: Path
    rows: list[dict[str, Any]]
    seconds: dict[str, float]
    results_json: Path
    figure: Path | None


def default_config_path() -> Path:
    return Path(__file__).resolve().parents[3] / "configs" / "demo_default.yaml"


def load_demo_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> DemoConfig:
    """Read a demo config; ``None`` means the built-in defaults (== configs/demo_default.yaml)."""
    from zeroground.config import from_dict, load_config, to_dict

    if path is None:
        cfg = DemoConfig()
        if overrides:
            data = to_dict(cfg)
            for dotted, value in overrides.items():
                node = data
                *parents, leaf = dotted.split(".")
                for key in parents:
                    node = node.setdefault(key, {})
                node[leaf] = value
            cfg = from_dict(DemoConfig, data, where="demo config")
        return cfg
    return load_config(path, DemoConfig, overrides)


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


def run_demo(out: str | Path = "demo_out", cfg: DemoConfig | None = None, *, progress: bool = True,
             echo: Callable[[str], None] = print) -> DemoResult:
    """Run the whole demo into ``out``; returns the metric rows (also in ``out/results.json``)."""
    import torch

    from zeroground.config import save_config
    from zeroground.data.annotations import read_psvl_json
    from zeroground.data.synthetic import make_world
    from zeroground.features.clip import load_clip
    from zeroground.features.extract import extract
    from zeroground.features.store import FeatureStore
    from zeroground.io import atomic_write_json, atomic_write_text

    cfg = cfg or DemoConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "demo_config.yaml")
    unknown = [m for m in cfg.methods if m not in BASELINES + TRAINED]
    if unknown:
        raise DemoError(f"unknown demo method(s) {unknown}; choose from {list(BASELINES + TRAINED)}")
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
    if reuse:
        _log("reusing the videos and features of the previous run in this folder (same world)", echo)
        train_split = _reload_split(out, "train")
        test_split = _reload_split(out, "test")
    else:
        fp_file.unlink(missing_ok=True)
        feats_path.unlink(missing_ok=True)
        _log(f"rendering {cfg.train_videos} unlabelled train videos and {cfg.test_videos} test videos", echo)
        train_split = make_world(out, "train", cfg.train_videos, seed=cfg.seed, cfg=cfg.world)
        test_split = make_world(out, "test", cfg.test_videos, seed=cfg.seed, cfg=cfg.world)
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

    train_vids = [p.video for p in train_split.plans]
    test_moments = read_psvl_json(test_split.annotations)
    durations = {p.video: p.duration for p in train_split.plans + test_split.plans}

    # 3. pseudo-labels (train videos only, no annotation read)
    t = time.perf_counter()
    pseudo_files: dict[str, list[Path]] = {}
    for method in ("psvl", "lfvmr"):
        if method not in cfg.methods:
            continue
        draws = bagging_draws(method, cfg)
        pseudo_files[method] = [
            make_pseudo_labels(method, store, train_vids, durations, out / "pseudo" / draw_file_name(method, k),
                               cfg, clip=clip, corpus=corpus, progress=progress, seed=cfg.seed + k)
            for k in range(draws)]
        n = len(json.loads(pseudo_files[method][0].read_text()))
        more = f" (and {draws - 1} more draws for the ensemble members)" if draws > 1 else ""
        _log(f"{method}: {n} pseudo-labels from {len(train_vids)} unlabelled videos{more}", echo)
    seconds["pseudo"] = time.perf_counter() - t

    # 4 + 5. train, evaluate
    records: dict[str, list] = {}
    t = time.perf_counter()
    torch.manual_seed(cfg.seed)
    for method in cfg.methods:
        tm = time.perf_counter()
        if method == "random":
            records[method] = _baseline("random", test_moments, seed=cfg.seed)
        elif method == "prior":
            records[method] = _baseline("prior", test_moments)
        elif method == "clip_training_free":
            from zeroground.ground.training_free import clip_training_free

            records[method] = clip_training_free(store, test_moments, clip, top_k=1)
        else:
            from zeroground.demo.training import predict_demo_model, train_demo_model

            train_files = pseudo_files.get(method, [train_split.annotations])
            model_dir = out / "models" / method
            _log(f"training {method} on {', '.join(str(f.relative_to(out)) for f in train_files)}", echo)
            train_demo_model(method, train_files, feats_path, out / "runs" / method, model_dir, cfg, clip_path,
                             clip=clip, progress=progress)
            records[method] = predict_demo_model(model_dir, feats_path, test_split.annotations,
                                                 out / "runs" / method / "test")
            if cfg.attention_readout:
                from zeroground.demo.training import other_readout, predict_with_readout

                other = other_readout(cfg.model.span_readout)
                records[f"{method}_{other}"] = predict_with_readout(model_dir, store, test_moments, clip, other)
        seconds[method] = time.perf_counter() - tm
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
    })
    fig = None
    if cfg.plot_queries > 0:
        fig = plot_timelines(out / "timelines.png", test_split.plans, test_moments, records,
                             [m for m in ("clip_training_free", "psvl", "lfvmr", "supervised") if m in records],
                             n_queries=cfg.plot_queries, seed=cfg.seed)
    return DemoResult(out, rows, seconds, results, fig)


# --------------------------------------------------------------------------- pieces


def bagging_draws(method: str, cfg: DemoConfig) -> int:
    """How many pseudo-label draws ``method`` needs: one per ensemble member when bagged."""
    from zeroground.demo.training import ensemble_size

    unknown = [m for m in cfg.train.bagging if m not in TRAINED or m == "supervised"]
    if unknown:
        raise DemoError(f"train.bagging lists {unknown}; only pseudo-supervised methods (psvl, lfvmr) draw pseudo-labels")
    return ensemble_size(method, cfg) if method in cfg.train.bagging else 1


def draw_file_name(method: str, k: int) -> str:
    return f"{method}.json" if k == 0 else f"{method}.draw{k}.json"


def make_pseudo_labels(method: str, store, vids: list[str], durations: dict[str, float], out_path: Path,
                       cfg: DemoConfig, *, clip, corpus: Path, progress: bool, seed: int | None = None) -> Path:
    """Pseudo-label the unlabelled train videos with ``method`` (C's ``pseudo_label``);
    ``seed`` (default: the demo's) seeds the proposals' k-means and the word draws."""
    from zeroground.pseudo import PseudoLabelConfig, pseudo_label

    pcfg = PseudoLabelConfig(method=method, seed=cfg.seed if seed is None else seed, fps=cfg.feature_fps, corpus=str(corpus),
                             proposals=dataclasses.replace(cfg.proposals),
                             psvl=dataclasses.replace(cfg.psvl), lfvmr=dataclasses.replace(cfg.lfvmr))
    pseudo_label(method, store, out_path, config=pcfg, durations={v: durations[v] for v in vids}, videos=vids,
                 clip_model=clip if method == "psvl" else None, progress=progress)
    return out_path


def _baseline(name: str, moments, **options) -> list:
    from zeroground.eval.baselines import baseline

    return baseline(name, moments, **options)


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
        kind = ("baseline" if m in BASELINES else "upper bound" if m.startswith("supervised")
                else "")
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
    colours = {"clip_training_free": "tab:gray", "psvl": "tab:blue", "lfvmr": "tab:orange", "supervised": "tab:green"}
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
