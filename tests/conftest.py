"""Shared test fixtures. Keep this file small: fixtures used by one test file live in that file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# The suite never reaches the hub: hub ids resolve from the cache only (tests that prove the
# download path point HF_ENDPOINT at a loopback stand-in and unset this in a subprocess).
os.environ["HF_HUB_OFFLINE"] = "1"

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"
SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"
PSVL_TEST_FILE = DATA_DIR / "psvl" / "charades_sta_test_pos_original_simple_sent.json"
PSVL_PSEUDO_FILE = DATA_DIR / "psvl" / "charades_train_pseudo_supervision_TEP_PS.json"


@pytest.fixture
def shared_dir() -> Path:
    """``../shared`` (PSVL oracle, SPEC); skips the test where it is absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared data folder {SHARED_DIR} is absent")
    return SHARED_DIR


@pytest.fixture
def oracle_dir(shared_dir: Path) -> Path:
    """``../shared/psvl/oracle``; skips the test where it is absent."""
    path = shared_dir / "psvl" / "oracle"
    if not path.is_dir():
        pytest.skip(f"PSVL oracle folder {path} is absent")
    return path


@pytest.fixture
def tiny_features() -> dict[str, np.ndarray]:
    """Three small deterministic videos of float32 [T, 8] features (T = 5, 7, 3)."""
    rng = np.random.default_rng(0)
    return {vid: rng.standard_normal((t, 8)).astype(np.float32) for vid, t in (("vidA", 5), ("vidB", 7), ("vidC", 3))}


@pytest.fixture
def npy_store_dir(tmp_path: Path, tiny_features: dict[str, np.ndarray]) -> Path:
    """A folder of <vid>.npy files holding ``tiny_features``."""
    folder = tmp_path / "npy_feats"
    folder.mkdir()
    for vid, arr in tiny_features.items():
        np.save(folder / f"{vid}.npy", arr)
    return folder


@pytest.fixture(scope="session")
def small_library(tmp_path_factory):
    """A generated world of 6 short test videos indexed with the shipped tiny CLIP.

    Returns (library folder, world split). Used by tests/library and tests/serve.
    """
    from zeroground.data.synthetic import make_world
    from zeroground.data.synthetic.world import WorldConfig
    from zeroground.demo.pipeline import shipped_tiny_clip
    from zeroground.library.index import index_videos

    # shipped in the package: missing is a failure, not a skip
    assert (shipped_tiny_clip() / "config.json").exists(), "shipped tiny CLIP missing (run `make tiny-clip`)"
    root = tmp_path_factory.mktemp("library")
    cfg = WorldConfig(min_events=2, max_events=3, min_duration=12, max_duration=20, min_event_s=3, max_event_s=5,
                      min_idle_s=0.5, max_idle_s=1)
    world = make_world(root / "world", "test", 6, seed=0, cfg=cfg)
    index_videos([root / "world" / "videos"], root / "lib", str(shipped_tiny_clip()), progress=False)
    return root / "lib", world


@pytest.fixture(scope="module")
def ray_cluster():
    """A local 2-CPU Ray cluster for one test module (the tests that run Ray tasks)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
