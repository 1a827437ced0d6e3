"""The training-free CLIP baseline and the Grounder (encode once, answer many queries)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from zeroground.cli import app
from zeroground.data.annotations import Moment
from zeroground.eval.predictions import read_predictions, write_predictions
from zeroground.features.clip import load_clip
from zeroground.testing import make_tiny_clip
from zeroground.features.store import FeatureStore, write_features_h5
from zeroground.ground.grounder import Grounder, GroundError
from zeroground.ground.training_free import (
    candidate_windows,
    clip_training_free,
    inside_minus_outside,
    score_windows,
)
from zeroground.testing import write_test_video

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny", seed=2)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_test_video(tmp_path_factory.mktemp("v") / "kitchen.mp4", seconds=6.0, fps=6, size=(64, 64))


def _planted(t: int, s: int, e: int, dim: int = 8, seed: int = 0):
    """Frames [s, e) equal the query direction; the others are orthogonal to it."""
    rng = np.random.default_rng(seed)
    q = np.zeros(dim, np.float32)
    q[0] = 1
    feats = rng.normal(size=(t, dim)).astype(np.float32)
    feats[:, 0] = 0
    feats[s:e] = q
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    return feats, q


@settings(max_examples=60, deadline=None)
@given(t=st.integers(1, 80), seed=st.integers(0, 10_000))
def test_inside_minus_outside_matches_brute_force(t, seed):
    sim = np.random.default_rng(seed).normal(size=t)
    windows = candidate_windows(t)
    assert windows[:, 0].min() == 0 and windows[:, 1].max() == t  # video start and end covered
    assert ((windows[:, 1] > windows[:, 0]) & (windows[:, 1] <= t)).all()
    got = inside_minus_outside(sim, windows)
    for (s, e), g in zip(windows, got):
        out = np.concatenate([sim[:s], sim[e:]])
        want = sim[s:e].mean() - (out.mean() if len(out) else sim[s:e].mean())
        assert g == pytest.approx(want, abs=1e-9)


def test_planted_moment_is_found_in_seconds():
    feats, q = _planted(40, 10, 20)
    res = score_windows(feats, q, duration=80.0, top_k=5)
    np.testing.assert_allclose(res.spans[0], [20.0, 40.0])  # [10, 20) of 40 frames of an 80 s video
    assert len(res.spans) == 5 and (np.diff(res.scores) <= 0).all()
    with pytest.raises(ValueError, match="same space"):
        score_windows(feats, np.ones(5, np.float32), 80.0)


def test_clip_training_free_on_a_feature_store(tiny, tmp_path):
    clip = load_clip(tiny)
    q = clip.encode_texts(["a person opens the door"])[0]
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(30, clip.dim)).astype(np.float32)
    feats -= np.outer(feats @ q, q)  # orthogonal to the query ...
    feats[12:18] = q  # ... except the planted moment
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    write_features_h5(tmp_path / "f.h5", {"v1": feats}, attrs={"fps": 1.0, "encoder": str(tiny)})
    moments = [Moment(video="v1", duration=30.0, start=12.0, end=18.0, sentence="a person opens the door")]
    with FeatureStore.open(tmp_path / "f.h5") as store:
        records = clip_training_free(store, moments, clip)
    (r,) = records
    assert r.pred[0] == pytest.approx([12.0, 18.0]) and len(r.pred) == 5 and r.gt == [12.0, 18.0]
    write_predictions(tmp_path / "p.jsonl", records)
    assert read_predictions(tmp_path / "p.jsonl")[0].pred[0] == pytest.approx([12.0, 18.0])


def test_grounder_encodes_once_and_caches_on_disk(tiny, video, tmp_path, monkeypatch):
    from zeroground.features import extract as extract_mod

    calls = []
    original = extract_mod.encode_video

    def counting(encoder, path, *args, **kwargs):  # the grounder imports it at call time
        calls.append(path)
        return original(encoder, path, *args, **kwargs)

    monkeypatch.setattr(extract_mod, "encode_video", counting)

    g = Grounder("training-free", str(tiny), cache_dir=tmp_path / "cache")
    first = g.ground(video, "a red square moves right", top_k=3)
    second = g.ground(video, "the door opens", top_k=3)
    assert len(calls) == 1
    assert len(first) == 3 and all(0 <= s.start < s.end <= 6.0 + 1e-9 for s in first)
    assert [s.source for s in second] == ["clip"] * 3
    # the spans are those of the scorer on directly computed features
    enc = g.encode(video)
    direct = score_windows(enc.features, load_clip(tiny).encode_texts(["the door opens"])[0], 6.0, top_k=3)
    np.testing.assert_allclose([[s.start, s.end] for s in second], direct.spans)

    # a new process (new Grounder) and a renamed copy hit the disk cache: same content
    copy = tmp_path / "renamed.mp4"
    shutil.copy(video, copy)
    g2 = Grounder("training-free", str(tiny), cache_dir=tmp_path / "cache")
    again = g2.ground(copy, "the door opens", top_k=3)
    assert len(calls) == 1 and again == second
    # other content misses
    other = write_test_video(tmp_path / "other.mp4", seconds=2.0, fps=4, size=(32, 32), seed=5)
    g2.ground(other, "the door opens")
    assert len(calls) == 2


@pytest.fixture
def encode_calls(monkeypatch):
    """Every (encoder name, fps) the Grounder really encodes a video with."""
    from zeroground.features import extract as extract_mod

    calls = []
    original = extract_mod.encode_video

    def counting(encoder, path, fps, *args, **kwargs):
        calls.append((encoder.name, fps))
        return original(encoder, path, fps, *args, **kwargs)

    monkeypatch.setattr(extract_mod, "encode_video", counting)
    return calls


def _direct(encoder_dir, video, fps):
    """Features computed without the Grounder: decode, then the encoder's image features."""
    from zeroground.video.decode import decode_video

    return load_clip(str(encoder_dir)).encode_images(decode_video(video, fps).frames)


def test_the_cache_misses_on_another_fps_and_another_encoder(tiny, video, tmp_path, encode_calls):
    cache = tmp_path / "cache"
    a = Grounder("training-free", str(tiny), fps=1.0, cache_dir=cache).encode(video)
    b = Grounder("training-free", str(tiny), fps=2.0, cache_dir=cache).encode(video)
    assert encode_calls == [(str(tiny), 1.0), (str(tiny), 2.0)]
    assert a.features.shape[0] == 6 and b.features.shape[0] == 12
    np.testing.assert_allclose(b.features, _direct(tiny, video, 2.0), atol=1e-6)
    other = make_tiny_clip(tmp_path / "other_clip", seed=9)
    c = Grounder("training-free", str(other), fps=1.0, cache_dir=cache).encode(video)
    assert encode_calls[-1] == (str(other), 1.0) and len(encode_calls) == 3
    np.testing.assert_allclose(c.features, _direct(other, video, 1.0), atol=1e-6)
    # and each one hits its own entry afterwards
    for enc, fps in ((tiny, 1.0), (tiny, 2.0), (other, 1.0)):
        Grounder("training-free", str(enc), fps=fps, cache_dir=cache).encode(video)
    assert len(encode_calls) == 3


def test_the_cache_misses_on_a_retrained_encoder_folder_even_with_the_same_file_sizes_and_times(
        video, tmp_path, encode_calls):
    import os

    folder = make_tiny_clip(tmp_path / "enc", seed=1)
    stamps = {f.name: (f.stat().st_atime_ns, f.stat().st_mtime_ns, f.stat().st_size) for f in folder.iterdir()}
    cache = tmp_path / "cache"
    before = Grounder("training-free", str(folder), cache_dir=cache).encode(video)
    make_tiny_clip(folder, seed=2)  # retrained in place: same files, same sizes, new weights
    for f in folder.iterdir():
        atime, mtime, size = stamps[f.name]
        assert f.stat().st_size == size
        os.utime(f, ns=(atime, mtime))  # copied back with times preserved (cp -p, rsync -a)
    after = Grounder("training-free", str(folder), cache_dir=cache).encode(video)
    assert len(encode_calls) == 2
    assert not np.allclose(before.features, after.features)
    np.testing.assert_allclose(after.features, _direct(folder, video, 1.0), atol=1e-6)


@pytest.mark.parametrize("damage", ["garbage", "cut", "wrong_shape"])
def test_a_corrupt_cache_entry_is_recomputed(tiny, video, tmp_path, encode_calls, damage):
    cache = tmp_path / "cache"
    first = Grounder("training-free", str(tiny), cache_dir=cache).encode(video)
    (entry,) = cache.glob("*.npz")
    data = entry.read_bytes()
    if damage == "garbage":
        entry.write_bytes(b"not a cache entry" * 10)
    elif damage == "cut":
        entry.write_bytes(data[: len(data) // 2])
    else:
        np.savez(entry, features=first.features[:-2], duration=np.float64(first.duration))
    again = Grounder("training-free", str(tiny), cache_dir=cache).encode(video)
    assert len(encode_calls) == 2
    np.testing.assert_array_equal(again.features, first.features)
    assert again.duration == first.duration
    assert entry.read_bytes() == data  # rewritten whole
    Grounder("training-free", str(tiny), cache_dir=cache).encode(video)
    assert len(encode_calls) == 2


def test_grounder_errors(tiny, video, tmp_path):
    g = Grounder("training-free", str(tiny), cache_dir=tmp_path)
    with pytest.raises(GroundError, match="empty query"):
        g.ground(video, "   ")
    with pytest.raises(GroundError, match="video not found"):
        g.ground(tmp_path / "missing.mp4", "a door")
    with pytest.raises(GroundError, match="no encoder"):
        Grounder("training-free", None)


def test_ground_cli_end_to_end(tiny, video, tmp_path):
    args = ["ground", str(video), "a person opens the door", "--encoder", str(tiny), "--cache-dir", str(tmp_path)]
    result = CliRunner().invoke(app, args + ["--top-k", "4"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]
    spans = np.array([[float(r[1]), float(r[2])] for r in rows])
    assert (spans[:, 0] < spans[:, 1]).all() and spans.min() >= 0 and spans.max() <= 6.0
    scores = [float(r[3]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    bad = CliRunner().invoke(app, ["ground", str(video), "  ", "--encoder", str(tiny), "--cache-dir", str(tmp_path)])
    assert bad.exit_code == 2 and "empty query" in bad.output
    nomodel = CliRunner().invoke(app, ["ground", str(video), "a door", "--model", str(tmp_path / "nope")])
    assert nomodel.exit_code == 2 and "model directory not found" in nomodel.output


def _small_cfg(**kw):
    from zeroground.model import ModelConfig

    base = dict(video_dim=64, num_segments=16, hidden=32, query_gru_hidden=16, video_gru_hidden=16, embed_dim=16,
                fusion_layers=1, nonlocal_layers=1, nonlocal_heads=2, clip_dim=64, clip_query_len=2, dropout=0.0)
    base.update(kw)
    return ModelConfig(**base)


def test_ground_with_a_clip_query_model_dir(tiny, video, tmp_path):
    from zeroground.model import GroundingModel, predict_spans, save_model_dir

    torch.manual_seed(0)
    cfg = _small_cfg(query_encoder="clip")
    model_dir = save_model_dir(tmp_path / "m", GroundingModel(cfg), cfg, text_encoder=str(tiny))
    g = Grounder(model_dir, None, cache_dir=tmp_path / "c")  # encoder read from the model dir
    assert g.encoder_name == str(tiny)
    spans = g.ground(video, "a person opens the door", top_k=4)
    assert [s.source for s in spans] == ["model", "clip", "clip", "clip"]
    enc = g.encode(video)
    q = load_clip(tiny).encode_texts(["a person opens the door"])
    want = np.clip(predict_spans(g._trained.model, cfg, None, enc.features, q).spans[0], 0, 1) * enc.duration
    np.testing.assert_allclose(sorted([spans[0].start, spans[0].end]), sorted(want), atol=1e-4)
    # a second query reuses the model's encoding of the video: same answer as from scratch
    later = g.ground(video, "someone takes a cup", top_k=1)[0]
    q2 = load_clip(tiny).encode_texts(["someone takes a cup"])
    want2 = np.clip(predict_spans(g._trained.model, cfg, None, enc.features, q2).spans[0], 0, 1) * enc.duration
    np.testing.assert_allclose(sorted([later.start, later.end]), sorted(want2), atol=1e-4)
    result = CliRunner().invoke(app, ["ground", str(video), "the door", "--model", str(model_dir), "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 0 and " model" in result.output, result.output


def test_ground_with_a_seed_lfvmr_model_dir(tiny, video, tmp_path):
    """The seed LFVMR network (architecture: lfvmr) grounds raw video through the same Grounder."""
    from zeroground.model import predict_spans, save_model_dir
    from zeroground.model.lfvmr import LFVMRConfig, LFVMRModel

    torch.manual_seed(0)
    cfg = LFVMRConfig(video_dim=64, clip_dim=64, num_segments=16, hidden=32, video_gru_hidden=16, heads=2,
                      selector_dim=16, selector_ff=16)
    model_dir = save_model_dir(tmp_path / "m", LFVMRModel(cfg), cfg, text_encoder=str(tiny))
    g = Grounder(model_dir, None, cache_dir=tmp_path / "c")
    assert g.encoder_name == str(tiny)
    first = g.ground(video, "a person opens the door", top_k=1)[0]
    enc = g.encode(video)
    q = load_clip(tiny).encode_texts(["a person opens the door"])
    want = np.clip(predict_spans(g._trained.model, cfg, None, enc.features, q).spans[0], 0, 1) * enc.duration
    assert first.source == "model"
    np.testing.assert_allclose(sorted([first.start, first.end]), sorted(want), atol=1e-4)
    result = CliRunner().invoke(app, ["ground", str(video), "the door", "--model", str(model_dir), "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 0 and " model" in result.output, result.output


def test_ground_with_a_token_model_dir_and_a_wrong_encoder(tiny, video, tmp_path):
    from zeroground.model import GroundingModel, build_vocab, save_model_dir

    torch.manual_seed(0)
    vocab = build_vocab([["open", "door"], ["take", "cup"]])
    cfg = _small_cfg(query_encoder="tokens", vocab_size=len(vocab))
    model_dir = save_model_dir(tmp_path / "tok", GroundingModel(cfg), cfg, vocab)
    spans = Grounder(model_dir, str(tiny), cache_dir=tmp_path / "c").ground(video, "A person opens the door.", top_k=2)
    assert spans[0].source == "model" and 0 <= spans[0].start <= spans[0].end <= 6.0 + 1e-6
    no_enc = CliRunner().invoke(app, ["ground", str(video), "the door", "--model", str(model_dir)])
    assert no_enc.exit_code == 2 and "no encoder" in no_enc.output
    wide = make_tiny_clip(tmp_path / "wide", proj_dim=32)
    bad = CliRunner().invoke(app, ["ground", str(video), "the door", "-m", str(model_dir), "-e", str(wide), "--cache-dir", str(tmp_path / "c")])
    assert bad.exit_code == 2 and "expects 64-d video features" in bad.output


def test_clip_baseline_cli(tiny, tmp_path):
    from zeroground.data.annotations import write_psvl_json

    clip = load_clip(tiny)
    q = clip.encode_texts(["the door opens"])[0]
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(20, clip.dim)).astype(np.float32)
    feats -= np.outer(feats @ q, q)
    feats[5:10] = q
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    write_features_h5(tmp_path / "f.h5", {"v1": feats}, attrs={"fps": 1.0, "encoder": str(tiny)})
    write_psvl_json([Moment(video="v1", duration=20.0, start=5.0, end=10.0, sentence="the door opens")], tmp_path / "a.json")
    out = tmp_path / "p.jsonl"
    result = CliRunner().invoke(app, ["clip-baseline", str(tmp_path / "f.h5"), str(tmp_path / "a.json"), "-e", str(tiny), "-o", str(out)])
    assert result.exit_code == 0, result.output
    (rec,) = read_predictions(out)
    assert rec.pred[0] == pytest.approx([5.0, 10.0]) and len(rec.pred) == 5
    assert "100.00" in result.output  # R1@0.7 of the single, exactly found moment
    wide = make_tiny_clip(tmp_path / "wide", proj_dim=32)
    bad = CliRunner().invoke(app, ["clip-baseline", str(tmp_path / "f.h5"), str(tmp_path / "a.json"), "-e", str(wide)])
    assert bad.exit_code == 2 and "64-d" in bad.output and "32-d" in bad.output
