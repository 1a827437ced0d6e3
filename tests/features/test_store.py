"""FeatureStore over .npy folders and HDF5 files; the resumable HDF5 writer."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from zeroground.features.store import (
    FeatureError,
    FeatureStore,
    H5FeatureWriter,
    MissingFeaturesError,
    write_features_h5,
)


@pytest.fixture(params=["npy", "h5", "h5-group"])
def store_path(request, tmp_path, npy_store_dir, tiny_features):
    if request.param == "npy":
        return npy_store_dir
    path = tmp_path / "feats.h5"
    if request.param == "h5":
        write_features_h5(path, tiny_features, attrs={"fps": 2.0, "encoder": "clip-vit-b32"})
    else:  # datasets under a "features" group, as some extraction tools write them
        with h5py.File(path, "w") as fh:
            for vid, arr in tiny_features.items():
                fh.create_dataset(f"features/{vid}", data=arr)
    return path


def test_store_serves_arrays_lazily(store_path, tiny_features):
    store = FeatureStore.open(store_path)
    assert store.video_ids == ["vidA", "vidB", "vidC"]
    assert store.dim == 8 and len(store) == 3
    assert "vidB" in store and "nope" not in store
    assert store.shape("vidB") == (7, 8)
    for vid, arr in tiny_features.items():
        got = store[vid]
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, arr)
    store.require(["vidA", "vidC"])
    store.close()


def test_h5_attrs_and_durations(tmp_path, tiny_features):
    path = tmp_path / "f.h5"
    write_features_h5(path, tiny_features, attrs={"fps": 2.0, "encoder": "clip-vit-b32"})
    with FeatureStore.open(path) as store:
        assert store.attrs == {"fps": 2.0, "encoder": "clip-vit-b32"}
        assert store.durations() == {"vidA": 2.5, "vidB": 3.5, "vidC": 1.5}
        assert store.durations(fps=1.0)["vidB"] == 7.0


def test_require_names_all_missing_videos(store_path):
    store = FeatureStore.open(store_path)
    with pytest.raises(MissingFeaturesError, match=r"features missing for 3 video\(s\): m1, m2, m3") as info:
        store.require(["vidA", "m2", "m1", "vidB", "m3", "m1"])
    assert info.value.missing == ["m1", "m2", "m3"]
    assert str(store_path.name) in str(info.value)
    with pytest.raises(MissingFeaturesError, match=r"no features for video 'm9'"):
        store["m9"]


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros((4, 8, 1), np.float32), r"\[T, K=8, D\] token features in a store of \[T, D\] frame features"),
        (np.zeros((4, 8, 1, 1), np.float32), r"expected \[T, D\] frame features or \[T, K, D\] token features, found shape \(4, 8, 1, 1\)"),
        (np.zeros((4, 6), np.float32), r"feature dimension 6 differs from the store's 8"),
        (np.array([[0.0] * 8, [np.nan] * 8], np.float32), r"8 non-finite value\(s\) \(NaN/inf\), first at time step 1"),
        (np.full((2, 8), np.inf, np.float32), r"16 non-finite value"),
        (np.zeros((0, 8), np.float32), r"array has no time steps"),
    ],
)
def test_bad_arrays_are_named(npy_store_dir, tmp_path, tiny_features, bad, match):
    np.save(npy_store_dir / "zbad.npy", bad)
    store = FeatureStore.open(npy_store_dir)
    with pytest.raises(FeatureError, match=r"zbad\.npy \(video 'zbad'\): " + match):
        store["zbad"]
    # the same array in HDF5 (written around the validating writer)
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset("vidA", data=tiny_features["vidA"])
        fh.create_dataset("zbad", data=bad)
    with pytest.raises(FeatureError, match=r"bad\.h5:/zbad \(video 'zbad'\): " + match):
        FeatureStore.open(path)["zbad"]


def test_unreadable_inputs(tmp_path):
    with pytest.raises(FeatureError, match=r"nothere: feature store not found"):
        FeatureStore.open(tmp_path / "nothere")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(FeatureError, match=r"junk\.h5: not a readable HDF5 file"):
        FeatureStore.open(junk)
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "v.npy").write_bytes(b"garbage")
    with pytest.raises(FeatureError, match=r"v\.npy \(video 'v'\): unreadable \.npy file"):
        FeatureStore.open(folder)["v"]


def test_writer_rejects_bad_arrays(tmp_path):
    with pytest.raises(FeatureError, match=r"w\.h5 \(video 'b'\): feature dimension 3 differs"):
        write_features_h5(tmp_path / "w.h5", [("a", np.zeros((2, 4))), ("b", np.zeros((2, 3)))])
    assert not (tmp_path / "w.h5").exists()  # atomic: nothing half-written left behind
    with pytest.raises(FeatureError, match=r"non-finite"):
        with H5FeatureWriter(tmp_path / "x.h5") as w:
            w.add("a", np.array([[np.nan]]))


def test_append_writer_resumes_and_ignores_incomplete_entries(tmp_path, tiny_features):
    path = tmp_path / "append.h5"
    with H5FeatureWriter(path, attrs={"fps": 1.0, "encoder": "clip"}) as w:
        w.add("vidA", tiny_features["vidA"])
        assert w.has("vidA") and not w.has("vidB")
    # simulate a kill between writing a dataset and marking it complete
    with h5py.File(path, "a") as fh:
        fh.create_dataset("vidB", data=np.zeros((3, 8), np.float32))
    with FeatureStore.open(path) as store:
        assert store.video_ids == ["vidA"] and store.attrs["fps"] == 1.0
    with H5FeatureWriter(path, attrs={"fps": 1.0}) as w:
        assert not w.has("vidB")
        w.add("vidB", tiny_features["vidB"])  # overwrites the half entry
        with pytest.raises(FeatureError, match=r"dimension 4 differs from the store's 8"):
            w.add("vidC", np.zeros((2, 4), np.float32))
    with FeatureStore.open(path) as store:
        assert store.video_ids == ["vidA", "vidB"]
        np.testing.assert_array_equal(store["vidB"], tiny_features["vidB"])
    with pytest.raises(FeatureError, match=r"attribute 'fps' is 1.0 in the file, not 2.0"):
        H5FeatureWriter(path, attrs={"fps": 2.0})


def test_append_writer_survives_a_kill(tmp_path):
    """A process killed mid-extraction leaves every finished video readable."""
    path = tmp_path / "killed.h5"
    script = textwrap.dedent(
        f"""
        import os, numpy as np
        from zeroground.features.store import H5FeatureWriter
        w = H5FeatureWriter({str(path)!r})
        for i in range(3):
            w.add(f"v{{i}}", np.full((4, 2), i, np.float32))
        os._exit(9)  # no close(), no flush at exit
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ}, timeout=60)
    assert proc.returncode == 9
    store = FeatureStore.open(path)
    assert store.video_ids == ["v0", "v1", "v2"]
    np.testing.assert_array_equal(store["v2"], np.full((4, 2), 2, np.float32))


def test_per_video_attrs_and_recorded_durations(tmp_path):
    path = tmp_path / "d.h5"
    with H5FeatureWriter(path, attrs={"fps": 1.0}) as w:
        w.add("a", np.zeros((10, 2), np.float32), attrs={"duration": 10.4})
        w.add("b", np.zeros((5, 2), np.float32))
        w.attrs["dim"] = 2
        assert w.video_ids == ["a", "b"] and w.entry_attrs("a") == {"duration": 10.4}
    with FeatureStore.open(path) as store:
        assert store.entry_attrs("a") == {"duration": 10.4}
        assert store.durations() == {"a": 10.4, "b": 5.0}  # recorded duration wins over T / fps
        assert store.durations(fps=2.0) == {"a": 5.0, "b": 2.5}  # an explicit fps wins over both
        assert store.dim == 2


def test_token_layout_round_trips_and_is_validated(tmp_path):
    """[T, K, D] token features (BLIP-2 Q-Former style, 32 x 256) beside [T, D] frame features."""
    rng = np.random.default_rng(0)
    feats = {"a": rng.standard_normal((7, 32, 256)).astype(np.float16), "b": rng.standard_normal((3, 32, 256)).astype(np.float32)}
    path = write_features_h5(tmp_path / "tok.h5", feats, attrs={"fps": 3.0})
    store = FeatureStore.open(path)
    assert store.tokens == 32 and store.dim == 256
    assert store.shape("a") == (7, 32, 256)
    np.testing.assert_array_equal(store["a"], feats["a"].astype(np.float32))
    assert store["b"].dtype == np.float32 and store["b"].shape == (3, 32, 256)
    store.check_shapes()
    assert store.durations() == {"a": 7 / 3.0, "b": 1.0}
    folder = tmp_path / "npy"
    folder.mkdir()
    np.save(folder / "a.npy", feats["a"])
    np.save(folder / "c.npy", rng.standard_normal((4, 16, 256)).astype(np.float32))  # another K
    np.save(folder / "d.npy", rng.standard_normal((4, 256)).astype(np.float32))  # frame layout
    st = FeatureStore.open(folder)
    assert st.tokens == 32
    with pytest.raises(FeatureError, match=r"\[T, K=16, D\] token features in a store of \[T, K=32, D\] token features"):
        st["c"]
    with pytest.raises(FeatureError, match=r"\[T, D\] frame features in a store of \[T, K=32, D\] token features"):
        st["d"]
    with pytest.raises(FeatureError, match="does not fit"):
        st.check_shapes()
    with pytest.raises(FeatureError, match="one store holds one layout"):
        write_features_h5(tmp_path / "mixed.h5", {"a": feats["a"], "d": np.zeros((4, 256), np.float32)})
    with H5FeatureWriter(tmp_path / "w.h5") as w:
        w.add("a", feats["a"])
        with pytest.raises(FeatureError, match="one store holds one layout"):
            w.add("d", np.zeros((4, 256), np.float32))
