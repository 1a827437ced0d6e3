"""Temporal event proposals: planted segments are recovered; knobs and errors behave."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zeroground.pseudo.proposals import (
    ProposalError,
    atomic_events,
    compose_events,
    kmeans,
    propose_events,
)


def planted(bounds: list[int], dim: int = 32, noise: float = 0.4, seed: int = 0) -> np.ndarray:
    """Piecewise-constant features (one random prototype per segment) plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    protos = rng.standard_normal((len(bounds) - 1, dim))
    x = np.concatenate([np.repeat(protos[k : k + 1], b - a, 0) for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))])
    return (x + noise * rng.standard_normal(x.shape)).astype(np.float32)


def spans_set(spans: np.ndarray) -> set[tuple[int, int]]:
    return {(int(s), int(e)) for s, e in spans}


@pytest.mark.parametrize(
    "bounds",
    [
        [0, 20, 50, 70, 100],            # Charades-like: 100 frames, 4 activities
        [0, 6, 14, 20, 27, 34],          # demo-like: 34 frames at 1 fps, 5 events
        [0, 10, 30],                     # two scenes
    ],
)
@pytest.mark.parametrize("ranking", ["coherence", "atoms", "contrast"])
def test_planted_segments_are_recovered(bounds: list[int], ranking: str) -> None:
    x = planted(bounds)
    spans = propose_events(x, num_clusters=len(bounds) - 1, min_len=0.05, max_len=1.0, max_proposals=50, seed=3,
                           ranking=ranking)
    planted_spans = set(zip(bounds[:-1], bounds[1:]))
    assert planted_spans <= spans_set(spans)


def test_more_clusters_than_segments_still_contains_planted_spans() -> None:
    # over-segmentation splits a segment, but runs of consecutive atoms re-join it
    bounds = [0, 7, 15, 22, 30]
    spans = propose_events(planted(bounds, noise=0.5), num_clusters=6, min_len=0.05, max_len=1.0,
                           max_proposals=100, seed=0)
    assert set(zip(bounds[:-1], bounds[1:])) <= spans_set(spans)


def test_defaults_cover_planted_events_best_tiou() -> None:
    from zeroground.pseudo.report import best_tiou

    bounds = [0, 6, 14, 20, 27, 34]
    x = planted(bounds, noise=0.6, seed=5)
    spans = propose_events(x) / len(x)
    gt = np.array(list(zip(bounds[:-1], bounds[1:]))) / len(x)
    assert best_tiou(spans, gt).min() >= 0.7


def test_deterministic_for_a_seed_and_sorted() -> None:
    x = planted([0, 20, 50, 70, 100], noise=1.0)
    a = propose_events(x, seed=11)
    b = propose_events(x, seed=11)
    np.testing.assert_array_equal(a, b)
    assert a.dtype.kind == "i" and a.shape[1] == 2
    assert (np.diff(a[:, 0]) >= 0).all()


def test_length_bounds_and_max_proposals() -> None:
    x = planted([0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100], noise=0.3)
    spans = propose_events(x, num_clusters=10, min_len=0.15, max_len=0.35, max_proposals=4)
    lengths = (spans[:, 1] - spans[:, 0]) / 100
    assert len(spans) == 4
    assert ((lengths >= 0.15 - 1e-9) & (lengths <= 0.35 + 1e-9)).all()


@pytest.mark.parametrize("ranking", ["coherence", "atoms"])
def test_single_atom_spans_come_first(ranking: str) -> None:
    atoms = np.array([[0, 10], [10, 20], [20, 30]])
    x = np.repeat(np.eye(3, 4), 10, axis=0)
    spans = compose_events(atoms, 30, min_len=0.0, max_len=1.0, max_proposals=3, max_atoms=3,
                           rng=np.random.default_rng(0), ranking=ranking, features=x)
    assert spans_set(spans) == {(0, 10), (10, 20), (20, 30)}


def test_coherence_ranking_keeps_steady_atoms_over_transitions() -> None:
    from zeroground.pseudo.proposals import coherence

    rng = np.random.default_rng(0)
    steady = np.repeat(np.eye(2, 8), 10, axis=0)  # frames 0-19: two steady activities
    walk = rng.standard_normal((10, 8))  # frames 20-29: every frame different
    x = np.concatenate([steady, walk])
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    starts, ends = np.array([0, 10, 20]), np.array([10, 20, 30])
    score = coherence(x, starts, ends)
    np.testing.assert_allclose(score[:2], 1.0)
    expected_walk = np.linalg.norm(x[20:30].sum(0)) / 10  # mean cosine to the (unit) centroid
    assert score[2] == pytest.approx(expected_walk) and score[2] < 0.6
    atoms = np.stack([starts, ends], 1)
    spans = compose_events(atoms, 30, min_len=0.0, max_len=1.0, max_proposals=2, max_atoms=1,
                           rng=np.random.default_rng(0), ranking="coherence", features=x)
    assert spans_set(spans) == {(0, 10), (10, 20)}
    with pytest.raises(ProposalError, match="needs the frame features"):
        compose_events(atoms, 30, min_len=0.0, max_len=1.0, max_proposals=2, max_atoms=1,
                       rng=np.random.default_rng(0), ranking="coherence")


def test_contrast_ranking_prefers_the_planted_spans() -> None:
    from zeroground.pseudo.proposals import boundary_contrast

    rng = np.random.default_rng(0)
    x = np.repeat(np.eye(3, 16), [10, 20, 10], axis=0) + 0.05 * rng.standard_normal((40, 16))  # orthogonal activities
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    starts, ends = np.array([10, 5, 10, 15]), np.array([30, 30, 35, 30])
    score = boundary_contrast(x, starts, ends)
    assert score.argmax() == 0  # [10, 30) beats spans that spill over or cut the segment
    spans = propose_events(x, num_clusters=3, max_proposals=1, ranking="contrast", min_len=0.3)
    np.testing.assert_array_equal(spans, [[10, 30]])


def test_nothing_fits_bounds_falls_back_to_closest() -> None:
    # one atomic event covering the whole 4-frame video, max_len 0.5 -> still one proposal
    x = np.ones((4, 8), np.float32)
    spans = propose_events(x, max_len=0.5)
    np.testing.assert_array_equal(spans, [[0, 4]])


def test_very_short_videos() -> None:
    for t in (1, 2, 3, 5):
        spans = propose_events(np.random.default_rng(t).standard_normal((t, 8)))
        assert len(spans) >= 1
        assert (spans[:, 0] >= 0).all() and (spans[:, 1] <= t).all() and (spans[:, 1] > spans[:, 0]).all()


def test_atomic_events_merge_short_runs() -> None:
    labels = np.array([0, 0, 0, 1, 0, 0, 2, 2, 2, 2])
    atoms = atomic_events(labels, None, min_atom_frames=2)
    # the lone "1" joins a neighbour; runs tile the video
    assert atoms[0, 0] == 0 and atoms[-1, 1] == 10
    assert (atoms[1:, 0] == atoms[:-1, 1]).all()
    assert ((atoms[:, 1] - atoms[:, 0]) >= 2).all()


def test_kmeans_separates_two_blobs() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (20, 4)), rng.normal(5, 0.1, (30, 4))])
    labels = kmeans(x, 2, rng=np.random.default_rng(1))
    assert len(set(labels[:20])) == 1 and len(set(labels[20:])) == 1 and labels[0] != labels[-1]


@settings(max_examples=30, deadline=None)
@given(t=st.integers(1, 60), d=st.integers(1, 16), k=st.integers(1, 8), seed=st.integers(0, 10_000))
def test_spans_are_valid_for_any_input(t: int, d: int, k: int, seed: int) -> None:
    x = np.random.default_rng(seed).standard_normal((t, d))
    spans = propose_events(x, num_clusters=k, seed=seed)
    assert 1 <= len(spans) <= 8
    assert (spans[:, 0] >= 0).all() and (spans[:, 1] <= t).all() and (spans[:, 1] > spans[:, 0]).all()
    assert len(spans_set(spans)) == len(spans)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"features": np.zeros((0, 4))}, "no frames"),
        ({"features": np.zeros(5)}, r"\[T, D\]"),
        ({"features": np.full((5, 2), np.nan)}, "NaN"),
        ({"features": np.zeros((5, 2)), "min_len": 0.6, "max_len": 0.5}, "min_len"),
        ({"features": np.zeros((5, 2)), "num_clusters": 0}, "num_clusters"),
        ({"features": np.zeros((5, 2)), "ranking": "best"}, "unknown ranking 'best'"),
    ],
)
def test_errors(kwargs: dict, match: str) -> None:
    feats = kwargs.pop("features")
    with pytest.raises(ProposalError, match=match):
        propose_events(feats, **kwargs)
