"""Two-stage search: stage 1 against a brute-force oracle, FAISS against exact, stage 2, CLI."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from zeroground.cli import app
from zeroground.testing import make_tiny_clip
from zeroground.ground.grounder import GroundError
from zeroground.ground.training_free import score_windows
from zeroground.library.index import Library, LibraryError, add_features
from zeroground.library.search import LOCALIZERS, Searcher, span_similarity


def _planted_library(tmp_path, n_videos=80, t=25, dim=64, faiss_min_frames=10**9, seed=0):
    """Random unit frames; video 'v017' frames 10..15 point along a query direction."""
    rng = np.random.default_rng(seed)
    feats = {}
    for i in range(n_videos):
        f = rng.normal(size=(t, dim)).astype(np.float32)
        feats[f"v{i:03d}"] = f / np.linalg.norm(f, axis=1, keepdims=True)
    return feats


def test_stage1_exact_matches_brute_force_and_faiss_agrees(tmp_path):
    clip = make_tiny_clip(tmp_path / "clip", proj_dim=64)
    feats = _planted_library(tmp_path)
    lib_exact = add_features(tmp_path / "exact", feats, {k: 25.0 for k in feats}, str(clip)).root
    lib_faiss = add_features(tmp_path / "faiss", feats, {k: 25.0 for k in feats}, str(clip), faiss_min_frames=100).root
    s = Searcher(lib_exact)
    q, _ = s.embed("a person opens the door")
    vids, scores = s.candidates(q, 10)
    oracle = sorted(((float(max(f @ q)), k) for k, f in feats.items()), reverse=True)[:10]
    assert [Library.open(lib_exact).videos[i].id for i in vids] == [k for _, k in oracle]
    np.testing.assert_allclose(scores, [s_ for s_, _ in oracle], rtol=1e-5)
    sf = Searcher(lib_faiss)
    assert sf.library.faiss_index is not None
    fv, _ = sf.candidates(q, 10)
    overlap = len(set(fv.tolist()) & set(vids.tolist()))
    assert overlap >= 8, overlap  # IVF + 8-bit codes: approximate, but the same videos


def test_planted_moment_is_found_first_with_its_span(tmp_path):
    clip = make_tiny_clip(tmp_path / "clip", proj_dim=64)
    feats = _planted_library(tmp_path)
    s0 = Searcher(add_features(tmp_path / "tmp", {"x": feats["v000"]}, {"x": 25.0}, str(clip)).root)
    q, _ = s0.embed("a person opens the door")
    feats["v017"][10:15] = q  # 5 s of the 25 s video match the sentence exactly
    s = Searcher(add_features(tmp_path / "lib", feats, {k: 25.0 for k in feats}, str(clip)).root)
    res = s.search("a person opens the door", k=5)
    top = res.hits[0]
    assert top.video == "v017" and top.start == pytest.approx(10.0, abs=1.0) and top.end == pytest.approx(15.0, abs=1.0)
    assert top.score == pytest.approx(span_similarity(feats["v017"] @ q, top.start, top.end, 25.0))
    assert [h.score for h in res.hits] == sorted((h.score for h in res.hits), reverse=True)
    assert len({h.video for h in res.hits}) == 5  # one moment per video by default


@pytest.mark.parametrize("name", sorted(LOCALIZERS))
def test_every_localizer_returns_spans_inside_the_video(name):
    rng = np.random.default_rng(1)
    f = rng.normal(size=(30, 8)).astype(np.float32)
    spans = LOCALIZERS[name](f, f[12], 30.0, 3)
    assert 1 <= len(spans) <= 3 and all(0 <= a < b <= 30.0 for a, b in spans)


def test_windows_localizer_is_the_grounders_rule(small_library):
    root, _ = small_library
    s = Searcher(root)
    vid = s.library.videos[0].id
    q, _ = s.embed("someone opens the door")
    f = np.asarray(s.library.features(vid))
    want = score_windows(f, q, s.library.videos[0].duration, top_k=1).spans[0]
    got = [h for h in s.search("someone opens the door", k=len(s.library)).hits if h.video == vid][0]
    assert (got.start, got.end) == pytest.approx(tuple(want))


def test_long_query_note_empty_query_and_encoder_mismatch(tmp_path, small_library):
    root, _ = small_library
    s = Searcher(root)
    res = s.search(" ".join(["door"] * 120), k=2)
    assert res.note and "truncated" in res.note
    assert s.search("someone opens the door", k=2).note is None
    with pytest.raises(GroundError, match="empty query"):
        s.search("   ")
    other = make_tiny_clip(tmp_path / "other", proj_dim=16)
    with pytest.raises(LibraryError, match="encoder mismatch"):
        Searcher(root, encoder=str(other))


def test_search_cli_prints_a_table_and_errors_exit_2(small_library, tmp_path):
    root, world = small_library
    r = CliRunner().invoke(app, ["search", str(root), "someone picks up the mug", "-k", "3"])
    assert r.exit_code == 0, r.output
    assert sum(p.video in r.output for p in world.plans) >= 1 and "start" in r.output
    r = CliRunner().invoke(app, ["search", str(tmp_path / "none"), "x"])
    assert r.exit_code == 2 and "no video library" in r.output
