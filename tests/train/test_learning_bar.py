"""Learning bars: each shipped training method, pseudo-labelled by its own labeller on a small
generated world and trained by the real loop, beats the ``prior`` and ``random`` baselines on
held-out captions of held-out videos; trained on the same pseudo-labels with the queries
shuffled against their spans it scores clearly lower. A misalignment between pseudo spans and
query vectors anywhere on the training data path therefore fails the suite.

The world lives in feature space (no rendering, no CLIP): each video is a "room" vector plus
noise, and each event adds the directions of its verb and its noun for its frames. The method
sees only the features (the LFVMR variant: its medoid-frame vectors; PSVL: per-frame object
detections and a noun-verb corpus), never a train span or caption. A held-out caption is a (verb, noun) pair:
its words for a token-query model, and for a CLIP-query model the unit vector of room + verb +
noun, the text side of a CLIP in which each word adds its own direction.

Budget (measured on 3 world seeds at 16 train videos, 20 epochs, attention read-out):
R1@0.5 0.45-0.76 against a prior of 0.18-0.30; the shuffled controls 0.00-0.04.

The seed LFVMR (``lfvmr``: spans only, candidate queries drawn from the span's frames while training)
has no query file to shuffle: its control draws the candidates from another video's frames, and what
it is held to is that its trained temporal attention finds the event the caption names (NO_BAR says
why its regression read-out is not held to the R1@0.5 / mIoU bar).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from zeroground.config import from_dict
from zeroground.data.annotations import Moment
from zeroground.eval.baselines import predict_prior, predict_random
from zeroground.eval.metrics import mean_iou, recall_at_iou
from zeroground.features.store import write_features_h5
from zeroground.model import load_model_dir, predict_spans
from zeroground.pseudo.label import PSEUDO_LABELERS, pseudo_label, vectors_path_for
from zeroground.pseudo.psvl import VerbStats
from zeroground.train.config import TrainConfig
from zeroground.train.loop import train

torch.set_num_threads(1)

DIM = 32
FPS = 2.0
EVENTS = [("open", "door"), ("close", "door"), ("take", "cup"), ("put", "cup"), ("read", "book"),
          ("throw", "ball"), ("switch", "lamp"), ("open", "box")]
PROPOSALS = dict(num_clusters=3, min_len=0.08, max_len=0.4, max_proposals=8, max_atoms=2)
NETWORK = {"video_dim": DIM, "num_segments": 32, "embed_dim": 16, "query_gru_hidden": 16, "video_gru_hidden": 16,
           "hidden": 32, "fusion_layers": 1, "nonlocal_layers": 1, "clip_dim": DIM, "clip_query_len": 2,
           "dropout": 0.0}
READOUT = {"span": "attention"}
OPTIM = {"epochs": 20, "batch_size": 8, "lr": 3e-3, "num_threads": 1, "plot": False, "seed": 0,
         "localization_loss_weight": 10.0}
MARGIN = 0.10  # over the better baseline, R1@0.5 and mIoU
CONTROL_GAP = {"R1@0.5": 0.20, "mIoU": 0.10}  # the shuffled control stays this far below the model


def direction(word: str) -> np.ndarray:
    v = np.random.default_rng([sum(map(ord, word)), len(word)]).standard_normal(DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


def caption_vector(verb: str, noun: str) -> np.ndarray:
    """The stand-in CLIP text embedding of "a person <verb>s the <noun>"."""
    v = direction("room") + direction(verb) + direction(noun)
    return (v / np.linalg.norm(v)).astype(np.float32)


@dataclass
class World:
    features: dict[str, np.ndarray]  # vid -> [T, DIM]
    moments: list[Moment]  # the true events (held out from training)
    detections: dict[str, list]  # vid -> per frame [[noun, score], ...]


def make_world(n_videos: int, seed: int, noise: float = 0.12) -> World:
    rng = np.random.default_rng(seed)
    features, moments, detections = {}, [], {}
    for i in range(n_videos):
        vid = f"s{seed}_{i:03d}"
        t_len = int(rng.integers(40, 90))
        x = direction("room") + noise * rng.standard_normal((t_len, DIM)).astype(np.float32)  # [T, DIM]
        labels: list[list] = [[] for _ in range(t_len)]
        t = int(rng.integers(2, 8))
        while True:
            length = int(rng.integers(8, 20))
            if t + length > t_len - 2:
                break
            verb, noun = EVENTS[int(rng.integers(len(EVENTS)))]
            x[t:t + length] += direction(verb) + direction(noun)
            for f in range(t, t + length):
                labels[f].append([noun, 0.8])
            moments.append(Moment(video=vid, duration=t_len / FPS, start=t / FPS, end=(t + length) / FPS,
                                  sentence=f"a person {verb}s the {noun}", tokens=[verb, noun]))
            t += length + int(rng.integers(3, 10))
        features[vid] = x.astype(np.float32)
        detections[vid] = labels
    return World(features, moments, detections)


def corpus_stats() -> VerbStats:
    """What an unpaired corpus says: which verbs go with which noun."""
    pairs: dict[str, dict[str, int]] = {}
    for verb, noun in EVENTS:
        pairs.setdefault(noun, {})[verb] = 1
    return VerbStats(pairs=pairs, verb_totals={v: 1 for v, _ in EVENTS})


@dataclass
class MethodBar:
    """How one pseudo-labelling method is pseudo-labelled, trained and queried in the bar."""

    label_kwargs: Callable[[World], dict[str, Any]]
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    test_queries: Callable[[list[Moment]], Any] = lambda moments: [list(m.tokens) for m in moments]


#: One entry per key of PSEUDO_LABELERS: a method added without its bar fails
#: test_every_shipped_training_method_has_a_learning_bar.
BARS: dict[str, MethodBar] = {
    "psvl": MethodBar(
        label_kwargs=lambda w: dict(detections=w.detections, verb_stats=corpus_stats(), num_nouns=1, num_verbs=1,
                                    queries_per_event=1),
    ),
    "lfvmr_psvlnet": MethodBar(
        label_kwargs=lambda w: {},
        model={"query_encoder": "clip"},
        train={"query_noise": "lafite", "query_noise_level": 0.3},
        test_queries=lambda moments: np.stack([caption_vector(*m.tokens) for m in moments]),
    ),
}


#: Shipped methods without a bar, and why (each still has a test that bites on its training data path).
#: The seed LFVMR: its trained temporal attention does find the event its query names (measured by
#: test_the_seed_lfvmr_attends_to_the_queried_event_and_its_swapped_frames_control_does_not), but the
#: span it outputs is its regression head's (SPEC §4.8, kept), trained by a localisation term of a
#: few hundredths against the guidance term's ~3 (SPEC §6, reg_w 1, kept), and within a bar's budget
#: that head stays near the prior (its starts correlate 0.13 with the true ones on the dev world).
#: Measured with the recipe below (SEED_LFVMR_*; ~25 s of one core per run), on the test world of
#: each seed, regression read-out (R1@0.5 / mIoU):
#:     world seed   model          swapped-frames control   prior          random
#:     1 (dev)      0.125 / 0.181  0.125 / 0.143            0.304 / 0.234  0.036 / 0.143
#:     2            0.204 / 0.190  0.037 / 0.171            0.296 / 0.267  0.130 / 0.185
#:     3            0.242 / 0.233  0.081 / 0.136            0.177 / 0.143  0.097 / 0.174
#: The bar asks max(prior, random) + MARGIN (dev world: 0.404 / 0.334). Longer budgets on the dev
#: world do not reach it: 400 epochs at batch 16 (~7x the budget) 0.304 / 0.281; 32 train videos,
#: 200 epochs at batch 16 (64 s of CPU) 0.304 / 0.311; even trained on the world's true spans
#: (500 epochs) 0.393 / 0.384, while its attention read-out there scores 0.643 / 0.543 and
#: attends e^2.9 = 19x more densely to the queried event than to the video's others. So the query,
#: though it enters only as an additive bias (SPEC §4.5), is learned; the regressor is what lags.
NO_BAR = {"lfvmr": "the seed's regression read-out stays at the prior within a bar's budget (see above); "
                   "its attention's query selectivity is tested instead"}


def test_every_shipped_training_method_has_a_learning_bar():
    assert set(BARS) | set(NO_BAR) == set(PSEUDO_LABELERS) and not set(BARS) & set(NO_BAR)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> tuple[Path, World, World]:
    root = tmp_path_factory.mktemp("bar_world")
    train_world, test_world = make_world(16, seed=1), make_world(20, seed=101)
    write_features_h5(root / "train.h5", train_world.features.items(), attrs={"fps": FPS})
    return root, train_world, test_world


def shuffle_queries(pseudo: Path, seed: int = 0) -> None:
    """Pair each pseudo span with another item's query (vectors or tokens), in place."""
    items = json.loads(pseudo.read_text())
    perm = np.random.default_rng(seed).permutation(len(items))
    vectors = vectors_path_for(pseudo)
    if vectors.is_file():
        np.save(vectors, np.load(vectors)[perm])
    else:
        tokens = [items[i]["tokens"] for i in perm]
        for item, toks in zip(items, tokens):
            item["tokens"] = toks
        pseudo.write_text(json.dumps(items))


def scores(spans: np.ndarray, gts: np.ndarray) -> dict[str, float]:
    topk = np.asarray(spans, dtype=np.float64).reshape(len(gts), -1, 2)[:, :1]  # [N, 1, 2]
    return {"R1@0.5": recall_at_iou(topk, gts, 0.5), "mIoU": mean_iou(topk, gts)}


def run_bar(method: str, root: Path, train_world: World, test_world: World, *, shuffled: bool) -> dict[str, float]:
    bar = BARS[method]
    out = root / f"{method}{'_shuffled' if shuffled else ''}"
    pseudo = out / "pseudo.json"
    pseudo.parent.mkdir(parents=True)
    pseudo_label(method, root / "train.h5", pseudo, **PROPOSALS, **bar.label_kwargs(train_world))
    data = {"train_annotations": str(pseudo), "video_features": str(root / "train.h5")}
    if shuffled:
        shuffle_queries(pseudo)
    if vectors_path_for(pseudo).is_file():
        data["query_vectors"] = str(vectors_path_for(pseudo))
    cfg = from_dict(TrainConfig, {"model": {**NETWORK, **bar.model}, "readout": READOUT, "data": data,
                                  "train": {**OPTIM, **bar.train}})
    model_dir = train(cfg, out / "run", progress=False, log=None)
    net, mcfg, vocab = load_model_dir(model_dir)
    moments = test_world.moments
    pred = predict_spans(net, mcfg, vocab, [test_world.features[m.video] for m in moments],
                         bar.test_queries(moments))
    return scores(pred.spans, np.array([m.span_normalized for m in moments]))


@pytest.fixture(scope="module")
def baselines(worlds) -> dict[str, dict[str, float]]:
    _, _, test_world = worlds
    moments = test_world.moments
    gts = np.array([m.span_normalized for m in moments])
    # prior from the test spans themselves: the bias ceiling of a constant span
    return {"prior": scores(np.array(predict_prior(moments)), gts),
            "random": scores(np.array(predict_random(moments, seed=0)), gts)}


@pytest.mark.parametrize("method", sorted(BARS))
def test_a_trained_model_beats_the_baselines_and_the_shuffled_control_does_not(method, worlds, baselines):
    root, train_world, test_world = worlds
    model = run_bar(method, root, train_world, test_world, shuffled=False)
    control = run_bar(method, root, train_world, test_world, shuffled=True)
    for metric in ("R1@0.5", "mIoU"):
        floor = max(b[metric] for b in baselines.values())
        assert model[metric] >= floor + MARGIN, (method, metric, model, baselines)
        assert control[metric] <= model[metric] - CONTROL_GAP[metric], (method, metric, model, control)


# -- The seed LFVMR: does its trained attention pick the event the query names? ----------------------
#: A recipe for architecture lfvmr, choosing only what a user sets for it: sizes for 32-d features and
#: ~100 pseudo spans (the seed's 256-wide layers, selector 128: no better at 100 epochs on 32 videos,
#: 2.3x the CPU), no dropout (a 16-video world, 100 epochs; the default 0.5 left it query-blind at 20),
#: lr 1e-3 (the seed's 4e-4 is slower; 3e-3 killed the regressor's output ReLU) and a batch of 8 for
#: more steps in the budget. The seed's network, ATP selector, 9 candidates, gaussian noise 0.04, loss
#: and regression read-out are unchanged. Chosen on world seed 1 (train) / 101 (test); confirmed with
#: the same settings on 2/102 and 3/103. The control draws every candidate from another video's frames
#: (same span), which is what any misalignment between pseudo spans and training queries amounts to;
#: pairing each item with another item's candidates inside make_batch (the sabotage) fails the test
#: too (dev world: selectivity -0.46).
SEED_LFVMR_NETWORK = {"architecture": "lfvmr", "video_dim": DIM, "clip_dim": DIM, "num_segments": 32, "hidden": 64,
                      "video_gru_hidden": 32, "selector_dim": 32, "selector_ff": 32, "dropout": 0.0,
                      "pe_dropout": 0.0}
SEED_LFVMR_OPTIM = {"epochs": 100, "batch_size": 8, "drop_last": False, "lr": 1e-3, "num_threads": 1, "plot": False,
                    "seed": 0, "query_noise": "gaussian", "query_noise_level": 0.04}
#: mean log(attention per segment in the queried event / in the video's other events) over held-out
#: captions of videos with two or more events; 0 = blind to the query. Measured (model / control):
#: world 1 (dev) 0.54 / -0.06, world 2 1.37 / 0.18, world 3 1.06 / -0.13.
SELECTIVITY_FLOOR = 0.35  # the model attends e^0.35 = 1.4x more densely to the queried event
SELECTIVITY_GAP = 0.35  # the swapped-frames control stays this far below the model


def swap_videos(store: Path, out: Path) -> Path:
    """A CLIP frame store in which every training video holds the previous video's frames: the seed
    LFVMR then draws each pseudo span's candidate queries from another video (same span), so no
    query belongs to its span."""
    from zeroground.features.store import FeatureStore

    src = FeatureStore.open(store)
    vids = sorted(src)
    write_features_h5(out, [(v, src[vids[i - 1]]) for i, v in enumerate(vids)], attrs={"fps": FPS})
    return out


def event_selectivity(attention: np.ndarray, mask: np.ndarray, moments: list[Moment]) -> float:
    """Mean over moments in videos with other events of log(mean attention weight of the segments
    inside the moment / mean over the video's other events of theirs)."""
    spans_of: dict[str, list[tuple[float, float]]] = {}
    for m in moments:
        spans_of.setdefault(m.video, []).append(m.span_normalized)
    logs = []
    for a, valid, m in zip(attention, mask, moments):
        n = int(valid.sum())
        centre = (np.arange(n) + 0.5) / n  # segment i covers [i/n, (i+1)/n)

        def density(span: tuple[float, float]) -> float:
            inside = (centre >= span[0]) & (centre < span[1])
            return float(a[:n][inside].mean()) if inside.any() else float("nan")

        others = [density(sp) for sp in spans_of[m.video] if sp != m.span_normalized]
        own, rest = density(m.span_normalized), np.nanmean(others) if others else float("nan")
        if np.isfinite(own) and np.isfinite(rest):
            logs.append(np.log(own / rest))
    return float(np.mean(logs))


def run_seed_lfvmr(root: Path, test_world: World, *, swapped: bool) -> tuple[dict[str, float], float]:
    """The real pipeline: pseudo-label spans, train the seed network drawing candidates from the
    query store, ground the held-out captions' vectors → (scores, event selectivity)."""
    out = root / f"seed_lfvmr{'_swapped' if swapped else ''}"
    pseudo = out / "pseudo.json"
    pseudo.parent.mkdir(parents=True)
    pseudo_label("lfvmr", root / "train.h5", pseudo, **PROPOSALS)
    frames = swap_videos(root / "train.h5", out / "swapped.h5") if swapped else root / "train.h5"
    data = {"train_annotations": str(pseudo), "video_features": str(root / "train.h5"), "query_features": str(frames)}
    cfg = from_dict(TrainConfig, {"model": SEED_LFVMR_NETWORK, "data": data, "train": SEED_LFVMR_OPTIM})
    net, mcfg, vocab = load_model_dir(train(cfg, out / "run", progress=False, log=None))
    moments = test_world.moments
    pred = predict_spans(net, mcfg, vocab, [test_world.features[m.video] for m in moments],
                         np.stack([caption_vector(*m.tokens) for m in moments]))
    return (scores(pred.spans, np.array([m.span_normalized for m in moments])),
            event_selectivity(pred.attention, pred.video_mask, moments))


def test_the_seed_lfvmr_attends_to_the_queried_event_and_its_swapped_frames_control_does_not(worlds, baselines):
    root, _, test_world = worlds
    model, model_sel = run_seed_lfvmr(root, test_world, swapped=False)
    control, control_sel = run_seed_lfvmr(root, test_world, swapped=True)
    report = dict(model=model, model_selectivity=model_sel, control=control, control_selectivity=control_sel,
                  baselines=baselines)
    assert model_sel >= SELECTIVITY_FLOOR, report
    assert control_sel <= model_sel - SELECTIVITY_GAP, report
