"""Library building: manifest + features + flat index agree, extending, resuming, errors."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from zeroground.demo.pipeline import shipped_tiny_clip
from zeroground.testing import make_tiny_clip
from zeroground.library.index import FAISS_FILE, INDEX, MANIFEST, Library, LibraryError, add_features, index_videos


def test_index_matches_features_and_manifest(small_library):
    root, world = small_library
    lib = Library.open(root)
    assert [v.id for v in lib.videos] == sorted(p.video for p in world.plans)
    assert isinstance(lib.vectors, np.memmap)  # mapped, not read
    with h5py.File(root / "features.h5", "r") as fh:
        for v in lib.videos:
            np.testing.assert_array_equal(lib.features(v.id), fh[v.id][()])
            assert v.frames == fh[v.id].shape[0]
            assert v.duration == pytest.approx(float(fh[v.id].attrs["duration"]))
            assert (root / v.file).is_file() and (root / v.file).parent.name == "videos"
    plan = {p.video: p for p in world.plans}
    assert all(v.duration == pytest.approx(plan[v.id].duration, abs=0.3) for v in lib.videos)
    assert np.allclose(np.linalg.norm(lib.vectors, axis=1), 1, atol=1e-4)


def test_extending_adds_only_new_videos_and_keeps_old_rows(tmp_path, small_library):
    src, world = small_library
    root = tmp_path / "lib"
    first = index_videos(world.videos[:2], root, str(shipped_tiny_clip()), progress=False)
    assert first.added == [p.stem for p in world.videos[:2]]
    before = np.array(Library.open(root).features(world.videos[0].stem))
    again = index_videos(world.videos[:3], root, progress=False)  # encoder comes from the manifest
    assert again.already == [p.stem for p in world.videos[:2]] and again.added == [world.videos[2].stem]
    lib = Library.open(root)
    assert len(lib) == 3 and lib.offsets[-1] == len(lib.vectors)
    np.testing.assert_array_equal(lib.features(world.videos[0].stem), before)
    np.testing.assert_array_equal(lib.features(world.videos[2].stem), Library.open(src).features(world.videos[2].stem))


def test_interrupted_index_is_detected_and_repaired(tmp_path, small_library):
    _, world = small_library
    root = tmp_path / "lib"
    index_videos(world.videos[:2], root, str(shipped_tiny_clip()), progress=False)
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["videos"].append({"id": "ghost", "file": None, "duration": 3.0, "frames": 3})  # index.h5 lacks it
    (root / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(LibraryError, match="interrupted"):
        Library.open(root)


def test_encoder_mismatch_and_bad_inputs_are_clear_errors(tmp_path, small_library):
    src, world = small_library
    other = make_tiny_clip(tmp_path / "other", proj_dim=16)
    with pytest.raises(LibraryError, match="indexed with encoder"):
        index_videos(world.videos[:1], src, str(other), progress=False)
    with pytest.raises(LibraryError, match="encoder mismatch"):
        Library.open(src).check_encoder(str(other))
    moved = tmp_path / "moved_clip"
    shutil.copytree(shipped_tiny_clip(), moved)
    Library.open(src).check_encoder(str(moved))  # same weights elsewhere: accepted
    with pytest.raises(LibraryError, match="no video library"):
        Library.open(tmp_path / "nothing")
    with pytest.raises(LibraryError, match="needs --encoder"):
        index_videos(world.videos[:1], tmp_path / "new", None, progress=False)
    with pytest.raises(LibraryError, match="unknown video"):
        Library.open(src).video("../../etc/passwd")


def test_corrupt_video_is_skipped_and_kept_out(tmp_path, small_library):
    _, world = small_library
    bad = tmp_path / "in" / "broken.mp4"
    bad.parent.mkdir()
    bad.write_bytes(b"\x00not a video" * 100)
    shutil.copy(world.videos[0], tmp_path / "in")
    rep = index_videos([tmp_path / "in"], tmp_path / "lib", str(shipped_tiny_clip()), progress=False)
    assert rep.added == [world.videos[0].stem] and len(rep.failed) == 1
    assert not (tmp_path / "lib" / "videos" / "broken.mp4").exists()
    assert [v.id for v in Library.open(tmp_path / "lib").videos] == [world.videos[0].stem]


def test_large_library_gets_a_faiss_file(tmp_path):
    rng = np.random.default_rng(0)
    feats = {f"v{i:03d}": rng.normal(size=(20, 16)).astype(np.float32) for i in range(60)}
    for f in feats.values():
        f /= np.linalg.norm(f, axis=1, keepdims=True)
    rep = add_features(tmp_path / "lib", feats, {k: 20.0 for k in feats}, "hub/enc", faiss_min_frames=1000)
    assert rep.faiss and (tmp_path / "lib" / FAISS_FILE).exists() and rep.frames == 1200
    lib = Library.open(tmp_path / "lib")
    assert lib.faiss_index.ntotal == 1200
    with h5py.File(tmp_path / "lib" / INDEX, "r") as fh:
        assert fh["vectors"].id.get_offset() is not None  # contiguous: memory-mappable
