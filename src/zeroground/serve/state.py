"""What the server holds: the searcher, uploaded videos (validated, encoded once), thumbnails.

Safety rules live here, not in the routes: videos are addressed by *id* only (a library id
or ``upload-<hash>``), never by a path from the request, so ``../`` and absolute paths are
simply unknown ids; uploads are limited in size and type, probed before use, and decoded
under a deadline.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from zeroground.errors import ZerogroundError
from zeroground.features.extract import VIDEO_SUFFIXES
from zeroground.library.index import LibraryError
from zeroground.library.search import Searcher

UPLOAD_PREFIX = "upload-"


class UploadError(ZerogroundError, ValueError):
    """An uploaded file was refused (too big, wrong type, corrupt, too slow to decode)."""


class NotFound(LibraryError):
    """An id that names no video of the library or the uploads."""


@dataclass
class Limits:
    max_upload_bytes: int = 200 * 1024 * 1024
    max_video_seconds: float = 3 * 3600.0
    decode_timeout_s: float = 120.0


@dataclass
class ServeState:
    searcher: Searcher
    upload_dir: Path
    limits: Limits = field(default_factory=Limits)
    _uploads: dict = field(default_factory=dict)  # id -> (path, EncodedVideo)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thumbs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.upload_dir = Path(self.upload_dir)
        self.upload_dir.mkdir(parents=True, exist_ok=True)

    @property
    def library(self):
        return self.searcher.library

    # ------------------------------------------------------------------ videos by id
    def video_file(self, video_id: str) -> Path:
        """The file of a video id, guaranteed inside the library or the upload folder."""
        if not isinstance(video_id, str) or not video_id:
            raise NotFound("no video id given")
        if video_id.startswith(UPLOAD_PREFIX):
            item = self._uploads.get(video_id)
            if item is None:
                raise NotFound(f"unknown upload {video_id!r}")
            path = item[0]
            base = self.upload_dir
        else:
            try:
                path = self.library.video_path(video_id)
            except LibraryError as err:
                raise NotFound(str(err)) from None
            if path is None:
                raise NotFound(f"video {video_id!r} was indexed from features only; there is no file to play")
            base = self.library.root
        real, root = path.resolve(), base.resolve()
        if root not in real.parents:  # a link pointing out of the folder is refused too
            raise NotFound(f"video {video_id!r} is not inside {base}")
        return real

    def duration(self, video_id: str) -> float:
        if video_id.startswith(UPLOAD_PREFIX):
            return self._upload(video_id)[1].duration
        return self.library.video(video_id).duration

    def _upload(self, video_id: str):
        item = self._uploads.get(video_id)
        if item is None:
            raise NotFound(f"unknown upload {video_id!r}")
        return item

    # ------------------------------------------------------------------ queries
    def ground(self, video_id: str, query: str, top_k: int = 5):
        """(spans, similarity curve [T], duration, note) of ``query`` in one video."""
        if top_k < 1 or top_k > 100:
            raise LibraryError(f"top_k must be in 1..100, got {top_k}")
        q, note = self.searcher.embed(query)
        if isinstance(video_id, str) and video_id.startswith(UPLOAD_PREFIX):
            enc = self._upload(video_id)[1]
            with self.searcher._lock:
                spans = self.searcher.grounder.ground(enc, query, top_k=top_k)
            feats, duration = enc.features, enc.duration
        else:
            try:
                spans = self.searcher.ground(video_id, query, top_k=top_k)
            except LibraryError as err:
                raise NotFound(str(err)) from None
            feats = np.asarray(self.library.features(video_id), np.float32)
            duration = self.library.video(video_id).duration
        return spans, feats @ q, duration, note

    # ------------------------------------------------------------------ uploads
    def add_upload(self, filename: str, stream: BinaryIO) -> tuple[str, float]:
        """Validate, store and encode an uploaded video -> (id, duration)."""
        suffix = Path(filename or "").suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            raise UploadError(f"refused upload {filename!r}: not a video type ({', '.join(VIDEO_SUFFIXES)})")
        h = hashlib.sha256()
        buf = io.BytesIO()
        while chunk := stream.read(1 << 20):
            if buf.tell() + len(chunk) > self.limits.max_upload_bytes:
                raise UploadError(f"refused upload {filename!r}: larger than {self.limits.max_upload_bytes // (1024 * 1024)} MB")
            h.update(chunk)
            buf.write(chunk)
        if buf.tell() == 0:
            raise UploadError(f"refused upload {filename!r}: the file is empty")
        video_id = UPLOAD_PREFIX + h.hexdigest()[:16]
        if video_id in self._uploads:
            return video_id, self._uploads[video_id][1].duration
        path = self.upload_dir / f"{video_id}{suffix}"
        from zeroground.io import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_bytes(buf.getvalue())
        try:
            enc = self._encode(path, video_id)
        except Exception:
            path.unlink(missing_ok=True)
            raise
        with self._lock:
            self._uploads[video_id] = (path, enc)
        return video_id, enc.duration

    def _encode(self, path: Path, video_id: str):
        from zeroground.ground.grounder import EncodedVideo
        from zeroground.video.decode import VideoError, iter_video_frames, probe_duration

        try:
            duration = probe_duration(path)
        except VideoError as err:
            raise UploadError(f"the uploaded file is not a readable video: {err}") from None
        if duration > self.limits.max_video_seconds:
            raise UploadError(f"uploaded video lasts {duration:.0f} s; the limit is {self.limits.max_video_seconds:.0f} s")
        fps = self.library.fps
        clip = self.searcher.grounder.clip
        deadline = time.monotonic() + self.limits.decode_timeout_s
        frames, chunks, info = [], [], {}
        try:
            for frame, _ in iter_video_frames(path, fps, info=info):
                if time.monotonic() > deadline:
                    raise UploadError(f"decoding the upload took longer than {self.limits.decode_timeout_s:.0f} s; refused")
                frames.append(frame)
                if len(frames) == 64:
                    with self.searcher._lock:
                        chunks.append(clip.encode_images(np.stack(frames)))
                    frames = []
        except VideoError as err:
            raise UploadError(f"the uploaded file is not a decodable video: {err}") from None
        if frames:
            with self.searcher._lock:
                chunks.append(clip.encode_images(np.stack(frames)))
        if not chunks:
            raise UploadError("the uploaded video has no frames")
        feats = np.concatenate(chunks).astype(np.float32)  # [T, D]
        return EncodedVideo(key=video_id, features=feats, duration=float(info.get("duration", duration)), fps=fps)

    # ------------------------------------------------------------------ thumbnails
    def thumbnail(self, video_id: str, t: float, width: int = 160) -> bytes:
        """JPEG of the frame on screen at ``t`` seconds (cached)."""
        key = (video_id, round(float(t), 1), width)
        if key in self._thumbs:
            return self._thumbs[key]
        path = self.video_file(video_id)
        data = frame_jpeg(path, t, width)
        with self._lock:
            if len(self._thumbs) > 2048:
                self._thumbs.clear()
            self._thumbs[key] = data
        return data


def frame_jpeg(path: Path, t: float, width: int = 160) -> bytes:
    """Seek near ``t`` and decode forward to the frame on screen at ``t``; JPEG bytes."""
    import av
    from PIL import Image

    from zeroground.video.decode import VideoError

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.time_base is not None:
                container.seek(max(0, int(t / stream.time_base)), stream=stream, backward=True, any_frame=False)
            chosen = None
            for frame in container.decode(stream):
                if chosen is None or frame.time is None or frame.time <= t:
                    chosen = frame
                if frame.time is not None and frame.time >= t:
                    break
            if chosen is None:
                raise VideoError(f"no frame at {t:.2f} s in {path.name}")
            img = chosen.to_image()
    except VideoError:
        raise
    except Exception as err:
        raise VideoError(f"cannot read a frame of {path.name}: {err}") from None
    h = max(1, round(img.height * width / img.width))
    img = img.resize((width, h))
    out = io.BytesIO()
    img.convert("RGB").save(out, format="JPEG", quality=85)
    return out.getvalue()
