"""PyAV decoding at a requested fps: frame counts, timestamps, content, seeking, errors."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zeroground.video.decode import (
    VideoError,
    decode_video,
    iter_video_frames,
    probe_duration,
    sample_times,
)
from zeroground.testing import write_test_video


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
