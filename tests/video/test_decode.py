"""PyAV decoding at a requested fps: frame counts, timestamps, content, seeking, errors."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zeroground.errors import ZerogroundError
from zeroground.video.decode import (
    TruncatedVideoError,
    VideoError,
    decode_video,
    iter_video_frames,
    probe_duration,
    sample_times,
)
from zeroground.testing import cut_video, lie_about_duration, scramble_video, write_test_video


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_test_video(tmp_path_factory.mktemp("v") / "clip.mp4", seconds=3.0, fps=10, size=(64, 64))


def _all_frames(path):
    """Every frame of the file, independently of decode_video: (rgb frames, pts seconds)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames, times = [], []
        for f in c.decode(s):
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(float(f.pts * s.time_base))
    return np.stack(frames), np.array(times)


def _expected_indices(times, duration, fps):
    n = max(1, math.floor(duration * fps + 0.5))
    targets = (np.arange(n) + 0.5) / fps
    return [max(0, int(np.searchsorted(times, t, side="right")) - 1) for t in targets]


def test_probe_duration(video):
    assert probe_duration(video) == pytest.approx(3.0, abs=1e-6)


@pytest.mark.parametrize("fps", [1.0, 2.0, 0.5, 3.0, 10.0])
def test_decode_at_fps_counts_timestamps_and_pixels(video, fps):
    frames, times = _all_frames(video)
    d = decode_video(video, fps)
    idx = _expected_indices(times, 3.0, fps)
    assert d.frames.shape == (len(idx), 64, 64, 3) and d.frames.dtype == np.uint8
    assert d.duration == pytest.approx(3.0)
    np.testing.assert_allclose(d.timestamps, times[idx], atol=1e-9)
    np.testing.assert_array_equal(d.frames, frames[idx])


def test_one_fps_frames_show_the_colour_of_their_second(video):
    # write_test_video paints a top bar in a per-second colour (seeded).
    rng = np.random.default_rng(0)
    colours = rng.integers(30, 255, size=(4, 3), dtype=np.uint8)
    d = decode_video(video, 1.0)
    np.testing.assert_array_equal(d.timestamps, [0.5, 1.5, 2.5])
    bar = d.frames[:, 0, 32].astype(int)  # [3, 3] first row, middle column
    assert np.abs(bar - colours[:3].astype(int)).max() <= 12  # lossy yuv420 coding


def test_seeking_gives_the_same_frames_as_decoding_everything(tmp_path):
    path = write_test_video(tmp_path / "gop.mp4", seconds=8.0, fps=10, size=(48, 64), gop=5)
    sparse = decode_video(path, 0.25, seek=True)
    full = decode_video(path, 0.25, seek=False)
    np.testing.assert_array_equal(sparse.timestamps, full.timestamps)
    np.testing.assert_array_equal(sparse.frames, full.frames)
    frames, times = _all_frames(path)
    np.testing.assert_array_equal(sparse.frames, frames[_expected_indices(times, 8.0, 0.25)])


def test_streaming_yields_the_same_as_decode(video):
    info: dict = {}
    items = list(iter_video_frames(video, 2.0, info=info))
    d = decode_video(video, 2.0)
    assert info["duration"] == pytest.approx(3.0)
    np.testing.assert_array_equal(np.stack([f for f, _ in items]), d.frames)


def test_errors_name_the_file(tmp_path):
    with pytest.raises(VideoError, match="video not found: .*nope.mp4"):
        decode_video(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    with pytest.raises(VideoError, match="cannot open video .*bad.mp4"):
        decode_video(bad)
    with pytest.raises(VideoError, match="bad.mp4"):
        probe_duration(bad)
    with pytest.raises(ValueError, match="fps must be"):
        decode_video(bad, 0)


def test_truncated_file_is_a_video_error(video, tmp_path):
    data = video.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="cut.mp4"):
        decode_video(cut)


@settings(max_examples=200, deadline=None)
@given(duration=st.floats(0.05, 5000), fps=st.floats(0.05, 60))
def test_sample_times_are_slot_centres_inside_the_video(duration, fps):
    t = sample_times(duration, fps)
    assert len(t) == max(1, math.floor(duration * fps + 0.5))
    np.testing.assert_allclose(np.diff(t), 1 / fps, rtol=1e-9)
    assert t[0] == pytest.approx(0.5 / fps)
    if len(t) > 1:
        assert t[-1] <= duration + 1e-9


@pytest.mark.parametrize("name,codec", [("a.mkv", "libx264"), ("b.webm", "libvpx-vp9"), ("c.avi", "mpeg4")])
def test_other_containers(tmp_path, name, codec):
    path = write_test_video(tmp_path / name, seconds=2.0, fps=5, size=(32, 32), codec=codec)
    d = decode_video(path, 1.0)
    assert d.duration == pytest.approx(2.0, abs=0.21) and len(d.frames) == 2
    np.testing.assert_allclose(d.timestamps, [0.4, 1.4], atol=1e-6)  # frames at 0.0, 0.2, ... seconds


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "sound.wav"
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with pytest.raises(VideoError, match="no video stream in .*sound.wav"):
        decode_video(path)


# ---------------------------------------------------------------------------- truncated and damaged videos

NATIVE_FPS = 10


def _genuine_frames(path):
    """Frames plain single-threaded PyAV decodes before the first error or the first missing
    frame, and the time the last of them leaves the screen (independent of decode_video)."""
    frames, times = [], []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        try:
            for f in c.decode(s):
                t = float(f.pts * s.time_base)
                if times and t - times[-1] > 1.5 / NATIVE_FPS:
                    break  # a stretch of frames is missing: decoding stops at the last good one
                frames.append(f.to_ndarray(format="rgb24"))
                times.append(t)
        except av.error.FFmpegError:
            pass
    return np.stack(frames), np.array(times), times[-1] + 1 / NATIVE_FPS


def _source(tmp_path, name, **kw):
    codec = {"mkv": "libx264", "webm": "libvpx-vp9", "mp4": "libx264"}[name.rsplit(".", 1)[1]]
    return write_test_video(tmp_path / name, seconds=6.0, fps=NATIVE_FPS, size=(64, 64), gop=10, codec=codec, **kw)


DAMAGED = {
    "cut.mkv": lambda src, out: cut_video(src, out, 0.5),
    "cut.webm": lambda src, out: cut_video(src, out, 0.5),
    "cut.mp4": lambda src, out: cut_video(src, out, 0.75),  # faststart: the index comes first, so it opens
    "scrambled.mkv": lambda src, out: scramble_video(src, out, 0.4, 0.6),
    "scrambled.webm": lambda src, out: scramble_video(src, out, 0.4, 0.6),
    "scrambled.mp4": lambda src, out: scramble_video(src, out, 0.4, 0.6),
    "lying.mkv": lambda src, out: lie_about_duration(src, out, 12.0),
}


@pytest.fixture(params=sorted(DAMAGED))
def damaged(request, tmp_path):
    name = request.param
    opts = {"container_options": {"movflags": "faststart"}} if name == "cut.mp4" else {}
    src = _source(tmp_path, "src." + name.rsplit(".", 1)[1], **opts)
    return DAMAGED[name](src, tmp_path / name)


def test_a_damaged_video_is_an_error_naming_the_file_and_where_decoding_stopped(damaged):
    _, _, end = _genuine_frames(damaged)
    declared = 12.0 if damaged.name == "lying.mkv" else 6.0
    assert end < declared - 1.0  # the damage is real: a second or more is gone
    with pytest.raises(TruncatedVideoError) as info:
        decode_video(damaged, 2.0)
    err = info.value
    assert isinstance(err, ZerogroundError)
    assert err.stopped_at == pytest.approx(end, abs=1e-6) and err.declared == pytest.approx(declared, abs=0.05)
    assert str(damaged) in str(err) and f"stopped at {end:.2f} s" in str(err)
    with pytest.raises(TruncatedVideoError):  # streaming stops the same way
        list(iter_video_frames(damaged, 2.0))


@pytest.mark.parametrize("fps", [2.0, 3.0, 10.0])
def test_allow_truncated_gives_the_genuine_frames_up_to_that_point_and_the_real_duration(damaged, fps):
    frames, times, end = _genuine_frames(damaged)
    d = decode_video(damaged, fps, allow_truncated=True)
    assert d.duration == pytest.approx(end, abs=1e-6) and d.truncated_at == pytest.approx(end, abs=1e-6)
    idx = _expected_indices(times, end, fps)
    assert len(d.frames) == len(idx) == max(1, math.floor(end * fps + 0.5))
    np.testing.assert_allclose(d.timestamps, times[idx], atol=1e-9)
    np.testing.assert_array_equal(d.frames, frames[idx])
    assert (np.asarray(d.timestamps) < end).all()  # no frame stands for a time after decoding stopped


@pytest.mark.parametrize("name", ["a.mkv", "b.webm", "c.mp4"])
def test_whole_videos_are_not_flagged(tmp_path, name):
    path = _source(tmp_path, name)
    for fps in (0.5, 1.0, 2.0, 3.0, 10.0):
        d = decode_video(path, fps)
        assert d.truncated_at is None and d.duration == pytest.approx(6.0, abs=0.11)
