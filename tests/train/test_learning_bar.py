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


#: Shipped methods without a bar, and why. The seed LFVMR's network sees the query only as an
#: additive bias (its cross-attention keys are all the query, SPEC §4.5): on this world, 20
#: epochs leave it at R1@0.5 0.13 / mIoU 0.19, no better than its control trained on swapped
#: candidate frames (0.16 / 0.19), and on the oracle's own data the reference, trained by its
#: own loop, scores below the prior as well (R1@0.5 26.5 vs 33.5, mIoU 29.0 vs 29.9). What
#: binds it is the oracle (tests/model/test_lfvmr_*.py, tests/train/test_lfvmr_training.py).
NO_BAR = {"lfvmr": "the seed's network does not learn this world within a bar's budget (see above)"}


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
