"""The registry of training-free rules, `clip-baseline --method`, and `ground --model training-free:<rule>`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from zeroground.cli import app
from zeroground.data.annotations import Moment, write_psvl_json
from zeroground.eval.predictions import read_predictions
from zeroground.features.clip import load_clip
from zeroground.testing import make_tiny_clip
from zeroground.features.store import FeatureStore, write_features_h5
from zeroground.ground.grounder import Grounder, GroundError
from zeroground.ground.tag import tag
from zeroground.ground.tfvtg import tfvtg
from zeroground.ground.training_free import SETTINGS, TRAINING_FREE_METHODS, predict_training_free
from zeroground.testing import write_test_video

torch.set_num_threads(1)


def _planted_tokens(n=60, k=4, d=16, s=20, e=35, seed=0):
    """Token features where one token of frames [s, e) points at the text, the rest are noise."""
    rng = np.random.default_rng(seed)
    text = np.zeros(d, np.float32)
    text[0] = 1.0
    v = rng.normal(size=(n, k, d)).astype(np.float32)
    v[:, :, 0] = 0.25 * np.linalg.norm(v, axis=-1)  # similarity ~0.25 everywhere (above the 0.2 mask)
    v[s:e, 1, 0] = 0.9 * np.linalg.norm(v[s:e, 1, 1:], axis=-1) / np.sqrt(1 - 0.9**2)  # ~0.9 inside
    return v, text


@pytest.mark.parametrize("method", list(TRAINING_FREE_METHODS))
@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("layout", ["frames", "tokens"])
def test_every_rule_finds_a_planted_moment(method, setting, layout):
    n, gs, ge = (60, 20, 35) if setting == "charades" else (200, 60, 140)  # moments the settings' strides can fit
    v, t = _planted_tokens(n=n, s=gs, e=ge)
    if layout == "frames":
        v = v[:, 1]  # [N, D]: the informative token as the frame feature
    res = TRAINING_FREE_METHODS[method](v, t, float(n), setting)  # one frame per second
    assert res.spans.ndim == 2 and res.spans.shape[1] == 2 and len(res.spans) == len(res.scores)
    s, e = res.spans[0]
    inter = max(0.0, min(e, ge) - max(s, gs))
    assert inter / (max(e, ge) - min(s, gs)) > 0.5, (method, setting, res.spans[0])


def test_registry_entries_are_the_rules():
    v, t = _planted_tokens(seed=3)
    for setting in SETTINGS:
        np.testing.assert_array_equal(TRAINING_FREE_METHODS["tfvtg"](v, t, 20.0, setting).spans, tfvtg(v, t, 20.0, setting).spans)
        np.testing.assert_array_equal(TRAINING_FREE_METHODS["tag"](v, t, 20.0, setting).spans, tag(v, t, 20.0, setting).spans)


def test_clip_baseline_methods_on_token_features_with_query_vectors(tmp_path):
    v, t = _planted_tokens()
    write_features_h5(tmp_path / "tok.h5", {"v1": v, "v2": v[::-1].copy()}, attrs={"fps": 3.0})
    moments = [Moment("v1", 20.0, 20 / 3, 35 / 3, "the planted thing"), Moment("v2", 20.0, 25 / 3, 40 / 3, "the planted thing")]
    write_psvl_json(moments, tmp_path / "a.json")
    np.save(tmp_path / "q.npy", np.stack([t, t]))
    for method in TRAINING_FREE_METHODS:
        out = tmp_path / f"run_{method}"
        r = CliRunner().invoke(app, ["clip-baseline", "--method", method, "--setting", "charades", "--features", str(tmp_path / "tok.h5"),
                                     "--annotations", str(tmp_path / "a.json"), "--query-vectors", str(tmp_path / "q.npy"), "--out", str(out), "-q"])
        assert r.exit_code == 0, r.output
        recs = read_predictions(out / "predictions.jsonl")
        assert len(recs) == 2
        with FeatureStore.open(tmp_path / "tok.h5") as store:
            direct = predict_training_free(store, moments, method, "charades", query_vectors=np.stack([t, t]))
        assert [r_.pred for r_ in recs] == [d.pred for d in direct]
        assert {"windows": 5, "tfvtg": 10, "tag": 12}[method] >= len(recs[0].pred) >= 1
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics and json.loads((out / "config.json").read_text())["method"] == method
    bad = CliRunner().invoke(app, ["clip-baseline", "-f", str(tmp_path / "tok.h5"), "-a", str(tmp_path / "a.json"),
                                   "--query-vectors", str(tmp_path / "q.npy"), "--method", "nope"])
    assert bad.exit_code == 2 and "unknown training-free method 'nope'" in bad.output
    np.save(tmp_path / "q3.npy", np.stack([t, t, t]))
    bad = CliRunner().invoke(app, ["clip-baseline", "-f", str(tmp_path / "tok.h5"), "-a", str(tmp_path / "a.json"),
                                   "--query-vectors", str(tmp_path / "q3.npy"), "--method", "tag"])
    assert bad.exit_code == 2 and "one row per query (2)" in bad.output
    np.save(tmp_path / "q8.npy", np.zeros((2, 8), np.float32))
    bad = CliRunner().invoke(app, ["clip-baseline", "-f", str(tmp_path / "tok.h5"), "-a", str(tmp_path / "a.json"),
                                   "--query-vectors", str(tmp_path / "q8.npy"), "--method", "tfvtg"])
    assert bad.exit_code == 2 and "16-d" in bad.output and "8-d" in bad.output


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny", seed=2)


def test_ground_with_training_free_rules_on_a_generated_video(tiny, tmp_path):
    video = write_test_video(tmp_path / "kitchen.mp4", seconds=8.0, fps=6, size=(64, 64))
    for rule in ("tag", "tfvtg", "windows"):
        r = CliRunner().invoke(app, ["ground", str(video), "a red square moves right", "--model", f"training-free:{rule}",
                                     "-e", str(tiny), "--cache-dir", str(tmp_path / "c"), "--top-k", "3"])
        assert r.exit_code == 0, r.output
        rows = [line.split() for line in r.output.splitlines()[2:]]
        assert 1 <= len(rows) <= 3 and all(row[-1] == ("clip" if rule == "windows" else rule) for row in rows)
        assert all(0 <= float(row[1]) <= float(row[2]) <= 8.0 + 1e-3 for row in rows)
    g = Grounder("training-free:tag", str(tiny), cache_dir=tmp_path / "c")
    assert g.fps == 3.0
    enc = g.encode(video)
    assert enc.features.shape[0] == 24
    spans = g.ground(enc, "a red square moves right", top_k=20)
    q = load_clip(tiny).encode_texts(["a red square moves right"])[0]
    np.testing.assert_allclose([[s.start, s.end] for s in spans], tag(enc.features, q, enc.duration).spans)
    with pytest.raises(GroundError, match="unknown training-free rule 'tvg'"):
        Grounder("training-free:tvg", str(tiny))
    bad = CliRunner().invoke(app, ["ground", str(video), "x", "--model", "training-free:tag", "-e", str(tiny), "--setting", "qv"])
    assert bad.exit_code == 2 and "unknown training-free setting" in bad.output


def test_training_free_rows_for_the_demo_table(tiny, tmp_path):
    from zeroground.ground.training_free import training_free_rows

    clip = load_clip(tiny)
    q = clip.encode_texts(["the door opens"])[0]
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(60, clip.dim)).astype(np.float32)
    feats -= np.outer(feats @ q, q)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    feats[20:35] = 0.8 * q + 0.6 * feats[20:35]
    feats[:20] = 0.3 * q + np.sqrt(1 - 0.09) * feats[:20]
    feats[35:] = 0.3 * q + np.sqrt(1 - 0.09) * feats[35:]
    write_features_h5(tmp_path / "f.h5", {"v1": feats}, attrs={"fps": 3.0})
    moments = [Moment("v1", 20.0, 20 / 3, 35 / 3, "the door opens")]
    with FeatureStore.open(tmp_path / "f.h5") as store:
        rows = training_free_rows(store, moments, clip)
    assert set(rows) == {"tfvtg", "tag"}
    for recs in rows.values():
        (rec,) = recs
        s, e = rec.pred[0]
        assert max(0.0, min(e, 35 / 3) - max(s, 20 / 3)) / (max(e, 35 / 3) - min(s, 20 / 3)) > 0.5, rec.pred[0]


def test_clip_baseline_on_multi_window_ground_truth_scores_both_ways(tmp_path):
    v, t = _planted_tokens()
    write_features_h5(tmp_path / "tok.h5", {"v1": v}, attrs={"fps": 3.0})
    gt = tmp_path / "gt.jsonl"
    gt.write_text(json.dumps({"qid": 7, "query": "the planted thing", "duration": 20.0, "vid": "v1",
                              "relevant_windows": [[20 / 3, 35 / 3], [0.0, 2.0]]}) + "\n")
    np.save(tmp_path / "q.npy", t[None])
    r = CliRunner().invoke(app, ["clip-baseline", "-f", str(tmp_path / "tok.h5"), "-a", str(gt), "--query-vectors",
                                 str(tmp_path / "q.npy"), "--method", "tfvtg", "-o", str(tmp_path / "run"), "-q"])
    assert r.exit_code == 0, r.output
    multi = json.loads((tmp_path / "run" / "metrics_qvhighlights.json").read_text())
    assert multi["MR-full-R1@0.5"] == 100.0 and "MR-full-mAP" in multi and "MR-full-R1@0.5" in r.output
