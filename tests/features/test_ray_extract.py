"""``zeroground extract --engine ray``: equal to the single-process path, faults, resume, shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from zeroground.testing import make_tiny_clip
from zeroground.features.extract import extract
from zeroground.features.store import FeatureError, FeatureStore, write_features_h5
from zeroground.testing import cut_video, write_test_video

import ray.data  # noqa: E402,F401  (a test dependency: missing is a failure)

from zeroground.cli import app  # noqa: E402
from zeroground.features.ray_extract import ClipActor, RaySettings, decode_video_row, extract_ray  # noqa: E402

FPS, BATCH = 2.0, 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny", seed=1)


@pytest.fixture(scope="module")
def twelve_videos(tmp_path_factory):
    """11 short generated videos of different lengths and sizes, and one corrupt file."""
    root = tmp_path_factory.mktemp("videos")
    for i in range(11):
        write_test_video(root / f"v{i:02d}.mp4", seconds=1.5 + (i % 4) * 0.75, fps=8,
                         size=(48, 64) if i % 2 else (64, 48), seed=i)
    (root / "v11_corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    return root


@pytest.fixture(scope="module")
def reference(tiny, twelve_videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    report = extract([twelve_videos], str(tiny), out, fps=FPS, batch_size=BATCH, progress=False)
    assert len(report.extracted) == 11 and len(report.failed) == 1
    return out


def _assert_same_features(ref_path, store_path, vids=None):
    with FeatureStore.open(ref_path) as ref, FeatureStore.open(store_path) as got:
        vids = ref.video_ids if vids is None else vids
        assert sorted(got.video_ids) == sorted(vids)
        for vid in vids:
            assert got[vid].shape == ref[vid].shape
            np.testing.assert_allclose(got[vid], ref[vid], atol=1e-5, rtol=0)
            assert got.entry_attrs(vid)["duration"] == pytest.approx(ref.entry_attrs(vid)["duration"])
        assert got.fps == ref.fps and got.attrs["encoder"] == ref.attrs["encoder"] and got.dim == ref.dim


def _shard_counts(folder: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for shard in folder.glob("shard-*.h5"):
        with h5py.File(shard, "r") as fh:
            for vid in fh:
                counts[vid] = counts.get(vid, 0) + 1
    return counts


def test_cli_ray_extract_equals_single_process_and_names_the_corrupt_video(
        ray_cluster, tiny, twelve_videos, reference, tmp_path):
    shards = tmp_path / "shards"
    args = ["extract", str(twelve_videos), "-e", str(tiny), "-o", str(shards), "--fps", str(FPS),
            "--batch-size", str(BATCH), "--engine", "ray", "--quiet"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 3, res.output
    assert "v11_corrupt.mp4" in res.output and "11 video(s) extracted" in res.output
    _assert_same_features(reference, shards)
    assert set(_shard_counts(shards).values()) == {1} and len(list(shards.glob("shard-*.h5"))) >= 2
    index = json.loads((shards / "index.json").read_text())
    assert sorted(v for vs in index["shards"].values() for v in vs) == [f"v{i:02d}" for i in range(11)]
    assert FeatureStore.open(shards / "index.json").video_ids == [f"v{i:02d}" for i in range(11)]

    # --merge: nothing left to extract (all in shards: resumable), one HDF5 like the local path's
    merged = tmp_path / "merged.h5"
    (tmp_path / "merged.h5.shards").symlink_to(shards, target_is_directory=True)
    res = CliRunner().invoke(app, args[:5] + [str(merged)] + args[6:] + ["--merge"])
    assert res.exit_code == 3 and "0 video(s) extracted" in res.output and "11 already done" in res.output
    _assert_same_features(reference, merged)
    with h5py.File(merged, "r") as fh:
        assert all(fh[v].attrs["complete"] for v in fh)


def test_killed_actor_and_killed_decode_worker_every_video_exactly_once(
        ray_cluster, tiny, twelve_videos, reference, tmp_path):
    marker_actor, marker_task = tmp_path / "actor_killed", tmp_path / "task_killed"

    def _kill_once(marker: Path) -> None:
        import signal

        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-job, no cleanup

    class DyingActor(ClipActor):
        calls = 0

        def __call__(self, batch):
            DyingActor.calls += 1
            if DyingActor.calls == 2:  # after one block was delivered: a shard is already on disk
                _kill_once(marker_actor)
            return super().__call__(batch)

    def dying_decode(row, **kw):
        if row["vid"] == "v05":
            _kill_once(marker_task)
        return decode_video_row(row, **kw)

    shards = tmp_path / "shards"
    report = extract_ray([twelve_videos], str(tiny), shards, fps=FPS, batch_size=BATCH, progress=False,
                         settings=RaySettings(actors=1, videos_per_block=2), actor_cls=DyingActor,
                         decode_fn=dying_decode)
    assert marker_actor.exists() and marker_task.exists()  # both faults happened
    assert sorted(report.extracted) == [f"v{i:02d}" for i in range(11)]
    assert list(report.failed) == [str(twelve_videos / "v11_corrupt.mp4")]
    assert _shard_counts(shards) == {f"v{i:02d}": 1 for i in range(11)}
    assert not list(shards.glob(".*tmp"))  # no half-written shard
    _assert_same_features(reference, shards)


def test_interrupted_driver_resumes_without_redoing_finished_shards(
        ray_cluster, tiny, twelve_videos, reference, tmp_path):
    shards = tmp_path / "shards"

    class Killed(Exception):
        pass

    def stop(name, vids):
        raise Killed(name)

    with pytest.raises(Killed):
        extract_ray([twelve_videos], str(tiny), shards, fps=FPS, batch_size=BATCH, progress=False,
                    settings=RaySettings(videos_per_block=3), on_shard_written=stop)
    first = _shard_counts(shards)
    assert 1 <= len(first) < 11
    (shards / ".shard-half.h5.tmp").write_bytes(b"half")  # what a kill mid-write leaves
    report = extract_ray([twelve_videos], str(tiny), shards, fps=FPS, batch_size=BATCH, progress=False)
    assert sorted(report.already_done) == sorted(first)
    assert sorted(report.extracted + report.already_done) == [f"v{i:02d}" for i in range(11)]
    assert _shard_counts(shards) == {f"v{i:02d}": 1 for i in range(11)}
    assert not (shards / ".shard-half.h5.tmp").exists()
    _assert_same_features(reference, shards)
    # settings of a different run are refused, not mixed in
    from zeroground.features.extract import ExtractError

    with pytest.raises(ExtractError, match="refusing to mix"):
        extract_ray([twelve_videos], str(tiny), shards, fps=1.0, progress=False)


_KILLED_DRIVER = """
import os, signal, sys
import zeroground.features.ray_extract as rx
real_add, added = rx.H5FeatureWriter.add, [0]
def add(self, *args, **kwargs):
    added[0] += 1
    if added[0] == 4:  # a video of the second shard: the driver dies mid-write
        os.kill(os.getpid(), signal.SIGKILL)
    return real_add(self, *args, **kwargs)
rx.H5FeatureWriter.add = add
rx.extract_ray([sys.argv[1]], sys.argv[2], sys.argv[3], fps=float(sys.argv[4]), batch_size=int(sys.argv[5]),
               progress=False, settings=rx.RaySettings(num_cpus=2, actors=1, videos_per_block=3))
"""


def test_driver_killed_mid_shard_leaves_no_half_shard_and_resumes(ray_cluster, tiny, twelve_videos, reference, tmp_path):
    """A real SIGKILL of the driver while it writes its second shard: the first shard is
    complete, the second exists only as a temporary file; the rerun skips the first shard's
    videos, clears the temporary file and ends with every video exactly once."""
    import signal

    shards = tmp_path / "shards"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2] / "src"),
                                                         os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_DRIVER, str(twelve_videos), str(tiny), str(shards),
                             str(FPS), str(BATCH)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=240)
    finally:
        try:  # the driver's local Ray processes (its session, started here) go with it
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    first = _shard_counts(shards)
    assert len(first) in (2, 3) and all(n == 1 for n in first.values())  # one complete shard (3 videos, 2 if one was corrupt)
    assert len(list(shards.glob(".shard-*.tmp"))) == 1  # the half-written one, under its temporary name
    report = extract_ray([twelve_videos], str(tiny), shards, fps=FPS, batch_size=BATCH, progress=False)
    assert sorted(report.already_done) == sorted(first)
    assert _shard_counts(shards) == {f"v{i:02d}": 1 for i in range(11)}
    assert not list(shards.glob(".*tmp"))
    _assert_same_features(reference, shards)


def test_shard_store_rereads_a_stale_index_and_refuses_duplicates(tmp_path):
    folder = tmp_path / "s"
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((5, 4)).astype(np.float32)
    write_features_h5(folder / "shard-1.h5", {"a": a}, attrs={"fps": 1.0})
    (folder / "index.json").write_text(json.dumps({"format": "zeroground-shards/1", "attrs": {}, "shards": {}}))
    write_features_h5(folder / "shard-2.h5", {"b": b}, attrs={"fps": 1.0})
    with FeatureStore.open(folder) as store:  # index lists no shard: the files are read instead
        assert store.video_ids == ["a", "b"] and store.fps == 1.0
        np.testing.assert_array_equal(store["b"], b)
    write_features_h5(folder / "shard-3.h5", {"a": a})
    with pytest.raises(FeatureError, match=r"'a' is in two shards, shard-1.h5 and shard-3.h5"):
        FeatureStore.open(folder)
    (folder / "index.json").write_text("{not json")
    with pytest.raises(FeatureError, match="not a zeroground shard index"):
        FeatureStore.open(folder)


def test_local_engine_never_imports_ray(tiny, twelve_videos, tmp_path):
    code = (
        "import sys; from zeroground.cli import app; from typer.testing import CliRunner; "
        f"r = CliRunner().invoke(app, ['extract', {str(twelve_videos / 'v00.mp4')!r}, '-e', {str(tiny)!r}, "
        f"'-o', {str(tmp_path / 'x.h5')!r}, '--quiet']); "
        "assert r.exit_code == 0, r.output; assert 'ray' not in sys.modules, 'ray imported'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_ray_decoding_is_the_same_truthful_decode(tiny, tmp_path):
    """The Ray decode task reports a cut video as the single-process path does (the same
    iter_video_frames), and keeps its genuine frames with allow_truncated."""
    from zeroground.features.clip import load_clip
    from zeroground.video.decode import TruncatedVideoError, decode_video

    src = write_test_video(tmp_path / "whole.mkv", seconds=6.0, fps=10, size=(48, 64), gop=10)
    cut = cut_video(src, tmp_path / "cut.mkv", 0.5)
    spec = load_clip(str(tiny)).spec
    row = decode_video_row({"path": str(cut), "vid": "cut"}, fps=FPS, batch_size=BATCH, spec=spec)
    with pytest.raises(TruncatedVideoError) as info:
        decode_video(cut, FPS)
    assert row["error"] == str(info.value) and row["pixels"].shape[0] == 0
    kept = decode_video_row({"path": str(cut), "vid": "cut"}, fps=FPS, batch_size=BATCH, spec=spec,
                            allow_truncated=True)
    d = decode_video(cut, FPS, allow_truncated=True)
    assert kept["error"] == "" and kept["duration"] == pytest.approx(d.duration) and d.duration < 5.0
    assert kept["pixels"].shape[0] == len(d.frames)


def test_ray_shards_record_the_encoder_and_refuse_another(ray_cluster, tmp_path):
    from zeroground.features.encoders import load_encoder
    from zeroground.features.extract import ExtractError

    enc = make_tiny_clip(tmp_path / "enc", seed=3)
    fingerprint = load_encoder(str(enc)).fingerprint
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_test_video(tmp_path / "a" / "first.mp4", seconds=1.5, fps=8, size=(48, 64))
    write_test_video(tmp_path / "b" / "second.mp4", seconds=1.5, fps=8, size=(48, 64), seed=1)
    out = tmp_path / "merged.h5"
    report = extract_ray([tmp_path / "a"], str(enc), out, fps=FPS, batch_size=BATCH, progress=False,
                         settings=RaySettings(actors=1), merge=True)
    assert report.extracted == ["first"]
    with FeatureStore.open(out.with_name(out.name + ".shards")) as shards, FeatureStore.open(out) as merged:
        assert shards.attrs["encoder_fingerprint"] == merged.attrs["encoder_fingerprint"] == fingerprint
    make_tiny_clip(enc, seed=4)  # the same folder, retrained: only the weights tell
    with pytest.raises(ExtractError, match="encoder_fingerprint"):
        extract_ray([tmp_path / "b"], str(enc), out, fps=FPS, batch_size=BATCH, progress=False,
                    settings=RaySettings(actors=1), merge=True)
    with FeatureStore.open(out.with_name(out.name + ".shards")) as shards:
        assert shards.video_ids == ["first"]  # nothing of the refused run was written
