"""LFVMR pseudo-labels: Lafite noise has the stated norm ratio; query selection; pseudo_label --method
lfvmr_psvlnet (zeroground's variant: one vector per event) and --method lfvmr (the seed's: spans only)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from zeroground.pseudo.label import PseudoLabelError, load_pseudo_vectors, pseudo_label
from zeroground.pseudo.lfvmr import LFVMRError, select_query_vector


def test_medoid_is_the_most_central_frame() -> None:
    # three frames near e1 and one outlier: medoid must be one of the e1-like frames (the middle one)
    frames = np.array([[1.0, 0.1, 0], [1.0, 0.0, 0], [1.0, -0.1, 0], [0, 0, 1.0]])
    q = select_query_vector(frames, "medoid")
    np.testing.assert_allclose(q, [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(q), 1.0, atol=1e-6)
    mean = select_query_vector(frames, "mean")
    expected = (frames / np.linalg.norm(frames, axis=1, keepdims=True)).mean(0)
    np.testing.assert_allclose(mean, expected / np.linalg.norm(expected), atol=1e-6)
    np.testing.assert_allclose(select_query_vector(frames, "center"), frames[1], atol=1e-6)


def test_selection_errors() -> None:
    with pytest.raises(LFVMRError, match="unknown selection rule 'best'"):
        select_query_vector(np.ones((2, 3)), "best")
    with pytest.raises(LFVMRError, match="non-empty"):
        select_query_vector(np.ones((0, 3)))
    with pytest.raises(LFVMRError, match="random generator"):
        select_query_vector(np.ones((2, 3)), "random")


def _clip_like_store(folder: Path, fps: float | None = 1.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    folder.mkdir()
    feats = {}
    for vid, bounds in (("a", [0, 8, 20, 30]), ("b", [0, 12, 25])):
        protos = rng.standard_normal((len(bounds) - 1, 16))
        x = np.concatenate([np.repeat(protos[k : k + 1], e - s, 0) for k, (s, e) in enumerate(zip(bounds[:-1], bounds[1:]))])
        x = x + 0.2 * rng.standard_normal(x.shape)
        x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
        np.save(folder / f"{vid}.npy", x)
        feats[vid] = x
    if fps is not None:
        (folder / "attrs.json").write_text(json.dumps({"fps": fps}))
    return feats


def test_pseudo_label_lfvmr_writes_json_vectors_and_config(tmp_path: Path) -> None:
    feats = _clip_like_store(tmp_path / "feats")
    out = tmp_path / "pseudo.json"
    pseudo_label("lfvmr_psvlnet", tmp_path / "feats", out, num_clusters=3)
    items = json.loads(out.read_text())
    vectors = load_pseudo_vectors(out, expected=len(items))
    assert vectors.shape == (len(items), 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (tmp_path / "pseudo.config.yaml").read_text().startswith("method: lfvmr_psvlnet")
    for item, vec in zip(items, vectors):
        x = feats[item["vid"]]
        t = len(x)
        s, e = round(item["timestamp"][0] * t), round(item["timestamp"][1] * t)
        assert item["duration"] == pytest.approx(t)  # fps 1
        # the query vector is one of the event's own frames (medoid rule)
        sims = x[s:e] @ vec
        assert sims.max() == pytest.approx(1.0, abs=1e-5)


def test_pseudo_label_lfvmr_separate_query_store(tmp_path: Path) -> None:
    _clip_like_store(tmp_path / "clipfeats")
    rng = np.random.default_rng(1)
    (tmp_path / "i3d").mkdir()
    for vid, t in (("a", 60), ("b", 50)):  # another rate and dim: proposals come from here
        np.save(tmp_path / "i3d" / f"{vid}.npy", rng.standard_normal((t, 24)).astype(np.float32))
    out = tmp_path / "p.json"
    pseudo_label("lfvmr_psvlnet", tmp_path / "i3d", out, query_features=str(tmp_path / "clipfeats"), fps=2.0)
    assert load_pseudo_vectors(out).shape[1] == 16


def test_pseudo_label_errors(tmp_path: Path) -> None:
    _clip_like_store(tmp_path / "feats", fps=None)
    with pytest.raises(PseudoLabelError, match="fps"):
        pseudo_label("lfvmr", tmp_path / "feats", tmp_path / "x.json")
    with pytest.raises(PseudoLabelError, match="unknown pseudo-label method 'foo'"):
        pseudo_label("foo", tmp_path / "feats", tmp_path / "x.json")
    with pytest.raises(PseudoLabelError, match="unknown pseudo-label knob 'clusters'"):
        pseudo_label("lfvmr", tmp_path / "feats", tmp_path / "x.json", fps=1.0, clusters=3)
    with pytest.raises(PseudoLabelError, match=r"\.json"):
        pseudo_label("lfvmr", tmp_path / "feats", tmp_path / "x.txt", fps=1.0)
    with pytest.raises(PseudoLabelError, match="vectors not found"):
        load_pseudo_vectors(tmp_path / "missing.json")
    assert not (tmp_path / "x.json").exists()


REPO = Path(__file__).resolve().parents[2]


def test_pseudo_label_seed_lfvmr_writes_spans_only(tmp_path: Path) -> None:
    """The seed's trainer draws its candidate frames from the spans: no vectors, same events as the variant."""
    _clip_like_store(tmp_path / "feats")
    pseudo_label("lfvmr", tmp_path / "feats", tmp_path / "seed.json", num_clusters=3)
    pseudo_label("lfvmr_psvlnet", tmp_path / "feats", tmp_path / "variant.json", num_clusters=3)
    seed = json.loads((tmp_path / "seed.json").read_text())
    variant = json.loads((tmp_path / "variant.json").read_text())
    assert not (tmp_path / "seed.npy").exists() and (tmp_path / "variant.npy").is_file()
    assert [(x["vid"], x["timestamp"]) for x in seed] == [(x["vid"], x["timestamp"]) for x in variant]
    assert all("tokens" not in x or not x["tokens"] for x in seed)


@pytest.mark.parametrize("name", ["charades_psvl", "charades_lfvmr_psvlnet", "anet_psvl", "anet_lfvmr_psvlnet",
                                  "charades_lfvmr"])
def test_paper_recipes_train_with_their_query_side(name: str) -> None:
    from zeroground.train.loop import QUERY_NOISE
    from zeroground.train.recipe import load_recipe

    r = load_recipe(name).recipe
    assert r.pseudo.method == name.split("_", 1)[1]
    assert r.model.query_encoder == ("clip" if "lfvmr" in name else "tokens")
    if "lfvmr" in name:
        assert r.train.query_noise_level > 0 and callable(QUERY_NOISE[r.train.query_noise])  # the Lafite hook
    if name == "charades_lfvmr":  # the seed's recipe: its network, its noise, its optimiser (the defaults)
        assert r.model.architecture == "lfvmr" and (r.train.query_noise, r.train.query_noise_level) == ("gaussian", 0.04)
        assert (r.train.lr, r.train.batch_size, r.train.epochs, r.train.seed) == (4e-4, 256, 500, 38)
        assert (r.model.video_dim, r.model.clip_dim, r.model.num_candidates) == (1024, 512, 9)
