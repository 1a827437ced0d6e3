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


class TruncatedVideoError(VideoError):
    """Decoding stopped before the video's declared end; names the file and the time."""

    def __init__(self, path: Path, stopped_at: float, declared: float, reason: str) -> None:
        self.path, self.stopped_at, self.declared, self.reason = Path(path), stopped_at, declared, reason
        super().__init__(
            f"{path}: decoding stopped at {stopped_at:.2f} s of a declared {declared:.2f} s ({reason}); "
            f"pass allow_truncated=True (extract: --allow-truncated) to use the first {stopped_at:.2f} s"
        )


class _Undecodable(Exception):
    """Raised by the frame generator when the demuxer or decoder fails on a packet."""


@dataclass
class DecodedVideo:
    frames: np.ndarray  # [N, H, W, 3] uint8 RGB
    timestamps: np.ndarray  # [N] float64 seconds, presentation time of each chosen frame
    duration: float  # seconds (the real duration when a truncated video was allowed)
    fps: float  # the requested sampling rate
    native_fps: float | None = None
    truncated_at: float | None = None  # seconds: where decoding stopped (allow_truncated only)


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
    allow_truncated: bool = False,
) -> DecodedVideo:
    """Decode ``path`` at ``fps`` frames per second -> :class:`DecodedVideo`.

    Holds every chosen frame in memory; for long videos use
    :func:`iter_video_frames`, which streams them. Raises :class:`VideoError`
    naming the file when it is missing, unreadable, has no video stream, or
    yields no frame, and :class:`TruncatedVideoError` when decoding stops before the
    declared end (unless ``allow_truncated``: then the frames up to that point, with
    the real duration).
    """
    frames: list[np.ndarray] = []
    stamps: list[float] = []
    info: dict = {}
    for frame, t in iter_video_frames(path, fps, seek=seek, skip_nonref=skip_nonref, threads=threads, info=info,
                                      allow_truncated=allow_truncated):
        frames.append(frame)
        stamps.append(t)
    return DecodedVideo(
        frames=np.stack(frames),  # [N, H, W, 3]
        timestamps=np.asarray(stamps, dtype=np.float64),
        duration=info["duration"],
        fps=float(fps),
        native_fps=info.get("native_fps"),
        truncated_at=info.get("truncated_at"),
    )


def iter_video_frames(
    path: str | Path,
    fps: float = 1.0,
    *,
    seek: bool = True,
    skip_nonref: bool = True,
    threads: int = 0,
    info: dict | None = None,
    allow_truncated: bool = False,
) -> Iterator[tuple[np.ndarray, float]]:
    """Yield ``(frame [H, W, 3] uint8 RGB, timestamp seconds)`` at ``fps``, streaming.

    ``info`` (if given) is filled with ``duration`` and ``native_fps`` before the
    first frame is yielded. When decoding stops before the declared end,
    :class:`TruncatedVideoError` is raised after the frames shown until then (a
    consumer must not keep them), or, with ``allow_truncated``, iteration ends there
    and ``info`` gets the real ``duration`` and ``truncated_at``.
    """
    path = Path(path)
    if fps <= 0 or not math.isfinite(fps):
        raise VideoError(f"fps must be a positive number, got {fps}")
    container = _open(path)
    try:
        yield from _decode(
            container, path, fps, seek=seek, skip_nonref=skip_nonref, threads=threads,
            info=info if info is not None else {}, allow_truncated=allow_truncated,
        )
    except VideoError:
        raise
    except Exception as err:  # corrupt streams surface as av errors mid-decode
        raise VideoError(f"cannot decode video {path}: {err}") from err
    finally:
        container.close()


def _decode(container, path: Path, fps: float, *, seek: bool, skip_nonref: bool, threads: int, info: dict,
            allow_truncated: bool = False):
    import bisect
    import heapq

    import av

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
    frame_s = 1.0 / native_fps if native_fps else 0.0  # one frame's screen time when a frame does not say
    end_slack = max(2 * frame_s, 0.25)  # an honest stream may end this much before its declared duration
    gap_slack = max(8 * frame_s, 0.5)  # decoded frames this far apart: the ones between are missing
    declared_end = start + float(duration)

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
    demuxed_end = start  # end of the latest packet read (the decoder may hold several back)
    # pts of packets sent to be decoded (not skippable) whose frame has not come out yet: the
    # decoder outputs frames in pts order, so one still here when a later frame arrives is lost
    expected: list[int] = []

    def frames():
        """Decoded frames, packet by packet; frames nobody can need are not even decoded."""
        nonlocal skip_mode, demuxed_end
        while True:
            restarted = False
            try:
                for packet in container.demux(stream):
                    if packet.pts is not None:
                        p_end = float(packet.pts * time_base) + (float(packet.duration * time_base) if packet.duration else frame_s)
                        demuxed_end = max(demuxed_end, p_end)
                    if skip_nonref and packet.pts is not None:
                        # Non-reference frames far from every target are skipped by the decoder;
                        # reference frames must be decoded for the ones after them.
                        mode = "DEFAULT" if needed(float(packet.pts * time_base)) else "NONREF"
                        if mode != skip_mode:
                            ctx.skip_frame = skip_mode = mode
                    if packet.pts is not None and (not skip_nonref or skip_mode == "DEFAULT"):
                        heapq.heappush(expected, int(packet.pts))
                    for frame in packet.decode():
                        jump = yield frame
                        if jump is not None:
                            restarted = True
                            break
                    if restarted:
                        break
            except av.error.FFmpegError as err:  # a corrupt packet: nothing after it is trusted
                failure = err
            else:
                failure = None
            if failure is not None:
                try:  # the frames already decoded in the decoder's threads are still genuine
                    for frame in ctx.decode(None):
                        if (yield frame) is not None:
                            break
                except av.error.FFmpegError:
                    pass
                raise _Undecodable(str(failure)) from failure
            if not restarted:
                return

    gen = frames()
    restart = False  # tell the frame generator to demux again after a seek
    good_end = start  # genuine pictures have been decoded up to this time
    prev_s = frame_s  # screen time of `prev`
    seeked_to: float | None = None  # target of the last seek, until a frame arrives
    stop: tuple[float, str] | None = None  # (time, reason) where decoding stopped
    at_eof = False
    while k < len(targets):
        try:
            frame = gen.send(True) if restart else next(gen)
        except StopIteration:
            at_eof = True
            break
        except _Undecodable as err:
            stop = (good_end, f"a frame after {good_end - start:.2f} s cannot be decoded: {err}")
            break
        restart = False
        if frame.pts is None:
            continue
        t = float(frame.pts * time_base)
        shown_s = float(frame.duration * time_base) if frame.duration else frame_s
        # Where the next picture must start at the latest; later means the ones between are missing.
        if prev is not None:
            limit = prev_t + prev_s + gap_slack
        elif seeked_to is not None:
            limit = seeked_to + gap_slack
        else:
            limit = start + gap_slack
        if t > limit:
            stop = (good_end, f"no frame decodes between {good_end - start:.2f} s and {t - start:.2f} s")
            break
        lost = None
        while expected and expected[0] < frame.pts:
            q = heapq.heappop(expected)
            if lost is None and (prev is None or q > prev.pts):
                lost = q
        if expected and expected[0] == frame.pts:
            heapq.heappop(expected)
        if lost is not None and (prev is not None or seeked_to is None):
            stop = (good_end, f"the frame at {float(lost * time_base) - start:.2f} s cannot be decoded")
            break
        seeked_to = None
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
        prev, prev_t, prev_s = frame, t, shown_s
        good_end = max(good_end, t + shown_s)
        if seek and k < len(targets) and gop is not None and seeked_for != k and targets[k] - t > 2 * gop:
            seeked_for = k  # a keyframe surely lies between: jump to the last one before the target
            container.seek(int(targets[k] / time_base), stream=stream, backward=True, any_frame=False)
            prev, prev_t = None, -math.inf
            seeked_to = float(targets[k])
            expected.clear()  # the seek flushed the decoder
            restart = True
    gen.close()
    if stop is None and at_eof and declared_end - good_end > end_slack:
        stop = (good_end, "the stream ends")
    if stop is None and not at_eof and k == len(targets):
        # Every sampling time was served; the stream must still reach its declared end.
        end = _packets_end(container, stream, time_base, frame_s, max(good_end, demuxed_end))
        if declared_end - end > end_slack:
            stop = (end, "the stream ends")
    if stop is not None:
        stopped, reason = stop
        if not allow_truncated or stopped <= start:
            raise TruncatedVideoError(path, max(0.0, stopped - start), float(duration), reason)
        real = stopped - start
        n_real = max(1, int(math.floor(real * fps + 0.5)))  # the sampling rule on the real duration
        if prev is not None:
            last = None
            while k < min(n_real, len(targets)) and targets[k] <= stopped + 1e-9:
                last = prev.to_ndarray(format="rgb24") if last is None else last
                yield last, prev_t - start
                n_out += 1
                k += 1
        if n_out == 0:
            raise VideoError(f"no decodable frame in {path}")
        info["duration"] = real
        info["truncated_at"] = real
        return
    # Past the last frame, within the end slack: the last picture stays on screen.
    if k < len(targets) and prev is not None:
        last = prev.to_ndarray(format="rgb24")
        while k < len(targets):
            yield last, prev_t - start
            n_out += 1
            k += 1
    if n_out == 0:
        raise VideoError(f"no decodable frame in {path}")


def _packets_end(container, stream, time_base, frame_s: float, so_far: float) -> float:
    """End time of the stream's remaining packets (demuxed, not decoded)."""
    import av

    end = so_far
    try:
        for packet in container.demux(stream):
            if packet.pts is not None:
                dur = float(packet.duration * time_base) if packet.duration else frame_s
                end = max(end, float(packet.pts * time_base) + dur)
    except av.error.FFmpegError:
        pass  # a corrupt tail ends where the readable packets do
    return end
