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

Budget and robustness: 32 unlabelled train videos (~90 pseudo-events) and 40 held-out test videos
(~110 captions). With the earlier 16 / 20 videos (56 captions) the bar was a coin flip: across
training seeds 0-3 on the development world, R1@0.5 spread 0.29-0.48 (psvl) and 0.29-0.46
(lfvmr_psvlnet) around the 0.404 it asked, and the machine's floating-point order picked the
side (0.482 on one CPU, 0.357 on another for the same seed). At 32 / 40 videos, measured on
world seeds 1 (development), 2 and 3 (attention read-out, R1@0.5): psvl 0.56-0.72 and
lfvmr_psvlnet 0.54-0.76 across training seeds, against a prior of 0.13-0.29; shuffled controls
0.00-0.13.

The seed LFVMR (``lfvmr``: spans only, candidate queries drawn from the span's frames while
training) has no query file to shuffle: its control draws the candidates from another video's
frames (:func:`swap_videos`), which is what any misalignment between pseudo spans and training
queries amounts to.
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


def caption_vectors(moments: list[Moment]) -> np.ndarray:
    """[N, DIM] the stand-in CLIP text embeddings of the moments' captions (CLIP-query models)."""
    return np.stack([caption_vector(*m.tokens) for m in moments])


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
    model: dict[str, Any] = field(default_factory=lambda: dict(NETWORK))
    train: dict[str, Any] = field(default_factory=lambda: dict(OPTIM))
    test_queries: Callable[[list[Moment]], Any] = lambda moments: [list(m.tokens) for m in moments]
    # (pseudo file, train store, run folder) -> data fields of the control run; it breaks the pairing of
    # pseudo spans and training queries. Default: each span gets another item's query (tokens or vectors).
    control: Callable[[Path, Path, Path], dict[str, Any]] = lambda pseudo, store, out: shuffle_queries(pseudo)


#: One entry per key of PSEUDO_LABELERS: a method added without its bar fails
#: test_every_shipped_training_method_has_a_learning_bar.
BARS: dict[str, MethodBar] = {
    "psvl": MethodBar(
        label_kwargs=lambda w: dict(detections=w.detections, verb_stats=corpus_stats(), num_nouns=1, num_verbs=1,
                                    queries_per_event=1),
    ),
    "lfvmr_psvlnet": MethodBar(
        label_kwargs=lambda w: {},
        model={**NETWORK, "query_encoder": "clip"},
        train={**OPTIM, "query_noise": "lafite", "query_noise_level": 0.3},
        test_queries=caption_vectors,
    ),
    # The seed's network, ATP selector over 9 candidates, gaussian noise 0.04 and loss, with only what a
    # user sets in a recipe for architecture lfvmr: sizes for 32-d features, no dropout (the default 0.5
    # left it query-blind at 20 epochs), lr 1e-3 (its 4e-4 is slower; 3e-3 killed the regressor's output
    # ReLU), batch 8 and 100 epochs (60 left the development world at R1@0.5 0.14 against a prior of
    # 0.13; 100: 0.42). Its queries are drawn from the pseudo span's frames while training: data.query_features
    # is the train store itself. Measured at 32 / 40 videos, attention read-out (R1@0.5 / mIoU):
    #     world seed   model          swapped-frames control   prior
    #     1 (dev)      0.421 / 0.401  0.070 / 0.109            0.132 / 0.128
    #     2            0.441 / 0.487  0.098 / 0.215            0.255 / 0.243
    #     3            0.452 / 0.452  0.078 / 0.175            0.287 / 0.225
    # Its own regression read-out (SPEC §4.8) is the weak part: trained by a localisation term of a few
    # hundredths against the guidance term's ~3 (SPEC §6), it stays near the prior within this budget
    # (16-video world: 0.13-0.24 R1@0.5; even on the world's true spans, 500 epochs: 0.39 against the
    # attention read-out's 0.64) -- docs/methods.md §4a.
    "lfvmr": MethodBar(
        label_kwargs=lambda w: {},
        model={"architecture": "lfvmr", "video_dim": DIM, "clip_dim": DIM, "num_segments": 32, "hidden": 64,
               "video_gru_hidden": 32, "selector_dim": 32, "selector_ff": 32, "dropout": 0.0, "pe_dropout": 0.0},
        train={"epochs": 100, "batch_size": 8, "drop_last": False, "lr": 1e-3, "num_threads": 1, "plot": False,
               "seed": 0, "query_noise": "gaussian", "query_noise_level": 0.04},  # the seed's loss (reg_w 1)
        test_queries=caption_vectors,
        control=lambda pseudo, store, out: {"query_features": str(swap_videos(store, out / "swapped.h5"))},
    ),
}


#: Shipped methods without a bar, and why (each must still have a test that bites on its training
#: data path). Every shipped method has one today.
NO_BAR: dict[str, str] = {}


def test_every_shipped_training_method_has_a_learning_bar():
    assert set(BARS) | set(NO_BAR) == set(PSEUDO_LABELERS) and not set(BARS) & set(NO_BAR)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> tuple[Path, World, World]:
    root = tmp_path_factory.mktemp("bar_world")
    train_world, test_world = make_world(32, seed=1), make_world(40, seed=101)
    write_features_h5(root / "train.h5", train_world.features.items(), attrs={"fps": FPS})
    return root, train_world, test_world


def shuffle_queries(pseudo: Path, seed: int = 0) -> dict[str, Any]:
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
    return {}


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
        data.update(bar.control(pseudo, root / "train.h5", out))
    if vectors_path_for(pseudo).is_file():
        data["query_vectors"] = str(vectors_path_for(pseudo))
    cfg = from_dict(TrainConfig, {"model": bar.model, "readout": READOUT, "data": data, "train": bar.train})
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


def swap_videos(store: Path, out: Path) -> Path:
    """A CLIP frame store in which every training video holds the previous video's frames: the seed
    LFVMR then draws each pseudo span's candidate queries from another video (same span), so no
    query belongs to its span."""
    from zeroground.features.store import FeatureStore

    src = FeatureStore.open(store)
    vids = sorted(src)
    write_features_h5(out, [(v, src[vids[i - 1]]) for i, v in enumerate(vids)], attrs={"fps": FPS})
    return out
