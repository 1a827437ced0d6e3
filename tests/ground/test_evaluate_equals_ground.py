"""``zeroground evaluate`` and ``Grounder.ground`` give the same rank-1 span for the same video and
sentence: a token-query model through the real spaCy simplification, and a CLIP-query model
through the encoder's text tower. Both from a model trained by the real loop on features
``zeroground extract`` wrote."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from zeroground.config import from_dict
from zeroground.features.extract import extract, read_durations
from zeroground.ground.grounder import Grounder
from zeroground.testing import make_tiny_clip, write_test_video
from zeroground.train.config import TrainConfig
from zeroground.train.evaluate import evaluate
from zeroground.train.loop import train

torch.set_num_threads(1)

FPS = 2.0
SENTENCES = ["A person opens the door.", "Someone takes a cup from the table.", "The man sits on a chair.",
             "a woman puts the book down"]
TRAIN_TOKENS = [["open", "door"], ["take", "cup"], ["sit", "chair"], ["put", "book"], ["person", "table"]]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_vs_ground")
    clip = make_tiny_clip(root / "clip", seed=4)
    for i, secs in enumerate([6.0, 8.0, 5.0]):
        write_test_video(root / "videos" / f"v{i}.mp4", seconds=secs, fps=10, size=(64, 64), seed=i)
    feats = root / "feats.h5"
    assert extract([root / "videos"], str(clip), feats, fps=FPS, progress=False).ok
    durations = read_durations(feats)
    rng = np.random.default_rng(0)
    train_items = []
    for vid, dur in sorted(durations.items()):
        for tokens in TRAIN_TOKENS:
            s = float(rng.uniform(0, 0.6))
            train_items.append({"vid": vid, "duration": dur, "timestamp": [s, s + 0.3], "tokens": tokens})
    (root / "train.json").write_text(json.dumps(train_items))
    np.save(root / "train_vectors.npy", rng.standard_normal((len(train_items), 64)).astype(np.float32))
    test_items = [{"vid": vid, "duration": dur, "timestamp": [0.1, 0.6], "sentence": s}
                  for vid, dur in sorted(durations.items()) for s in SENTENCES]  # no tokens: spaCy simplifies
    (root / "test.json").write_text(json.dumps(test_items))
    return root, clip, feats


@pytest.mark.parametrize("readout", ["attention", "regression"])
@pytest.mark.parametrize("query_encoder", ["tokens", "clip"])
def test_evaluate_and_ground_give_the_same_rank_1_span(world, tmp_path, query_encoder, readout):
    root, clip, feats = world
    model = {"video_dim": 64, "num_segments": 16, "embed_dim": 16, "query_gru_hidden": 16, "video_gru_hidden": 16,
             "hidden": 32, "fusion_layers": 1, "nonlocal_layers": 1, "clip_dim": 64, "clip_query_len": 2,
             "query_encoder": query_encoder}
    data = {"train_annotations": str(root / "train.json"), "video_features": str(feats)}
    train_section = {"epochs": 3, "batch_size": 8, "lr": 3e-3, "num_threads": 1, "plot": False,
                     "localization_loss_weight": 10.0}
    if query_encoder == "clip":
        train_section["text_encoder"] = str(clip)
        data["query_vectors"] = str(root / "train_vectors.npy")
    cfg = from_dict(TrainConfig, {"model": model, "readout": {"span": readout}, "data": data, "train": train_section})
    model_dir = train(cfg, tmp_path / "run", progress=False, log=None)
    if readout == "regression":  # a 3-epoch head outputs ReLU zeros: lift it to spans that differ per query
        from safetensors.torch import load_file, save_file

        weights = load_file(str(model_dir / "weights.safetensors"))
        weights["loc_regressor_two_stage.MLP_reg.2.bias"] += torch.tensor([0.3, 0.8])
        save_file(weights, str(model_dir / "weights.safetensors"))
    evaluate(model_dir, feats, root / "test.json", tmp_path / "eval")
    records = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 3 * len(SENTENCES)

    g = Grounder(model_dir, cache_dir=tmp_path / "cache")  # encoder and fps from the model directory
    assert g.encoder_name == str(clip) and g.fps == FPS
    spans = []
    for rec in records:
        top = g.ground(root / "videos" / f"{rec['video']}.mp4", rec["query"], top_k=1)
        assert len(top) == 1 and top[0].source == "model"
        spans.append([top[0].start, top[0].end])
    predicted = np.array([r["pred"][0] for r in records])  # seconds, as the model gave them
    if readout == "regression":  # the Grounder answers inside the video; evaluate keeps the raw output
        predicted = np.sort(np.clip(predicted, 0, [[r["duration"]] for r in records]), axis=1)
    np.testing.assert_allclose(np.array(spans), predicted, atol=1e-4)
    assert len({tuple(np.round(s, 3)) for s in spans}) > 1  # the queries do not all get one answer
