"""Decode a video at a requested frame rate with PyAV, decoding only what is needed.

Sampling rule: a video of ``duration`` seconds sampled at ``fps`` gives
``N = max(1, round(duration * fps))`` frames, frame ``k`` being the picture on
screen at the centre of its slot, ``t_k = (k + 0.5) / fps`` (the last frame
whose timestamp is <= t_k). Feature ``k`` thus stands for the interval
``[k / fps, (k + 1) / fps)``, and every centre lies inside the video.

Why it is fast: decoding is threaded (``thread_type="AUTO"``); only the chosen
frames are converted to RGB (conversion costs more than decoding); the decoder
skips non-reference frames (most B-frames) whose timestamp is not within two
frame durations before a sampling time, since nothing can need them; and when
the next wanted frame lies beyond the next keyframe, we seek to it instead of
decoding the frames in between. The result is the same frames as decoding
everything (tests check this).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from zeroground.errors import ZerogroundError


class VideoError(ZerogroundError, ValueError):
    """A video could not be opened or decoded; the message names the file."""


@dataclass
class DecodedVideo:
    frames: np.ndarray  # [N, H, W, 3] uint8 RGB
    timestamps: np.ndarray  # [N] float64 seconds, presentation time of each chosen frame
    duration: float  # seconds
    fps: float  # the requested sampling rate
    native_fps: float | None = None


def _open(path: str | Path):
    import av

    path = Path(path)
    if not path.exists():
        raise VideoError(f"video not found: {path}")
    try:
        container = av.open(str(path))
    except Exception as err:  # av raises many error types (InvalidDataError, OSError, ...)
        raise VideoError(f"cannot open video {path}: {err}") from err
    if not container.streams.video:
        container.close()
        raise VideoError(f"no video stream in {path}")
    return container


def _stream_duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        d = float(stream.duration * stream.time_base)
        if d > 0:
            return d
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000  # av.time_base is microseconds
    if stream.frames and stream.average_rate:
        return float(stream.frames / stream.average_rate)
    return None


def probe_duration(path: str | Path) -> float:
    """Duration of the first video stream in seconds, from the container header.

    Falls back to demuxing every packet (no decoding) when the header has none.
    """
    container = _open(path)
    try:
        stream = container.streams.video[0]
        d = _stream_duration(container, stream)
        if d is None:
            end = 0.0
            for packet in container.demux(stream):
                if packet.pts is not None and packet.duration is not None:
                    end = max(end, float((packet.pts + packet.duration) * stream.time_base))
            d = end
        if not d or d <= 0:
            raise VideoError(f"cannot determine the duration of {path}")
        return d
    except VideoError:
        raise
    except Exception as err:
        raise VideoError(f"cannot read video {path}: {err}") from err
    finally:
        container.close()


def sample_times(duration: float, fps: float) -> np.ndarray:
    """Slot centres ``(k + 0.5) / fps`` for ``k < max(1, round(duration * fps))``."""
    if fps <= 0:
        raise VideoError(f"fps must be > 0, got {fps}")
    n = max(1, int(math.floor(duration * fps + 0.5)))  # half up, not banker's rounding
    return (np.arange(n) + 0.5) / fps


def decode_video(
    path: str | Path,
    fps: float = 1.0,
    *,
    seek: bool = True,
    skip_nonref: bool = True,
    threads: int = 0,
) -> DecodedVideo:
    """Decode ``path`` at ``fps`` frames per second -> :class:`DecodedVideo`.

    Holds every chosen frame in memory; for long videos use
    :func:`iter_video_frames`, which streams them. Raises :class:`VideoError`
    naming the file when it is missing, unreadable, has no video stream, or
    yields no frame.
    """
    frames: list[np.ndarray] = []
    stamps: list[float] = []
    info: dict = {}
    for frame, t in iter_video_frames(path, fps, seek=seek, skip_nonref=skip_nonref, threads=threads, info=info):
        frames.append(frame)
        stamps.append(t)
    return DecodedVideo(
        frames=np.stack(frames),  # [N, H, W, 3]
        timestamps=np.asarray(stamps, dtype=np.float64),
        duration=info["duration"],
        fps=float(fps),
        native_fps=info.get("native_fps"),
    )


def iter_video_frames(
    path: str | Path,
    fps: float = 1.0,
    *,
    seek: bool = True,
    skip_nonref: bool = True,
    threads: int = 0,
    info: dict | None = None,
) -> Iterator[tuple[np.ndarray, float]]:
    """Yield ``(frame [H, W, 3] uint8 RGB, timestamp seconds)`` at ``fps``, streaming.

    ``info`` (if given) is filled with ``duration`` and ``native_fps`` before the
    first frame is yielded.
    """
    path = Path(path)
    if fps <= 0 or not math.isfinite(fps):
        raise VideoError(f"fps must be a positive number, got {fps}")
    container = _open(path)
    try:
        yield from _decode(
            container, path, fps, seek=seek, skip_nonref=skip_nonref, threads=threads, info=info if info is not None else {}
        )
    except VideoError:
        raise
    except Exception as err:  # corrupt streams surface as av errors mid-decode
        raise VideoError(f"cannot decode video {path}: {err}") from err
    finally:
        container.close()


def _decode(container, path: Path, fps: float, *, seek: bool, skip_nonref: bool, threads: int, info: dict):
    import bisect

    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    if threads:
        stream.thread_count = threads
    ctx = stream.codec_context
    time_base = stream.time_base or Fraction(1, 1_000_000)
    start = float(stream.start_time * time_base) if stream.start_time is not None else 0.0
    duration = _stream_duration(container, stream)
    if duration is None:
        duration = probe_duration(path)
    targets = start + sample_times(duration, fps)  # [N] absolute presentation times
    target_list = targets.tolist()
    native_fps = float(stream.average_rate) if stream.average_rate else None
    info["duration"] = float(duration)
    info["native_fps"] = native_fps
    # A frame is shown at target t iff its pts p <= t < next pts, so it can only be
    # needed when some target lies in [p, p + a couple of frame durations].
    margin = 2.0 / native_fps if native_fps else 0.5

    def needed(p: float) -> bool:
        j = bisect.bisect_left(target_list, p - 1e-9)
        return j < len(target_list) and target_list[j] <= p + margin

    k = 0  # index of the next target
    n_out = 0
    prev = None  # last decoded frame before the current one (still unconverted)
    prev_t = -math.inf
    gop = None  # longest gap between keyframes seen so far
    last_key_t = None
    seeked_for = -1  # never seek twice for the same target (a seek may land behind us)
    skip_mode = None

    def frames():
        """Decoded frames, packet by packet; frames nobody can need are not even decoded."""
        nonlocal skip_mode
        while True:
            restarted = False
            for packet in container.demux(stream):
                if skip_nonref and packet.pts is not None:
                    # Non-reference frames far from every target are skipped by the decoder;
                    # reference frames must be decoded for the ones after them.
                    mode = "DEFAULT" if needed(float(packet.pts * time_base)) else "NONREF"
                    if mode != skip_mode:
                        ctx.skip_frame = skip_mode = mode
                for frame in packet.decode():
                    jump = yield frame
                    if jump is not None:
                        restarted = True
                        break
                if restarted:
                    break
            if not restarted:
                return

    gen = frames()
    restart = False  # tell the frame generator to demux again after a seek
    while k < len(targets):
        try:
            frame = gen.send(True) if restart else next(gen)
        except StopIteration:
            break
        restart = False
        if frame.pts is None:
            continue
        t = float(frame.pts * time_base)
        if frame.key_frame:
            if last_key_t is not None and t > last_key_t:
                # The longest gap seen: seeking only pays when a keyframe surely lies ahead.
                gop = t - last_key_t if gop is None else max(gop, t - last_key_t)
            last_key_t = t
        # Every target in [prev_t, t) is shown by the previous frame; convert only those.
        while k < len(targets) and targets[k] < t:
            shown, shown_t = (prev, prev_t) if prev is not None else (frame, t)
            yield shown.to_ndarray(format="rgb24"), shown_t - start
            n_out += 1
            k += 1
        prev, prev_t = frame, t
        if seek and k < len(targets) and gop is not None and seeked_for != k and targets[k] - t > 2 * gop:
            seeked_for = k  # a keyframe surely lies between: jump to the last one before the target
            container.seek(int(targets[k] / time_base), stream=stream, backward=True, any_frame=False)
            prev, prev_t = None, -math.inf
            restart = True
    gen.close()
    # Past the last frame: the last picture stays on screen.
    if k < len(targets) and prev is not None:
        last = prev.to_ndarray(format="rgb24")
        while k < len(targets):
            yield last, prev_t - start
            n_out += 1
            k += 1
    if n_out == 0:
        raise VideoError(f"no decodable frame in {path}")
