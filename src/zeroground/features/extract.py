"""Video files -> CLIP features in an HDF5 feature file, resumable and robust to bad files.

``extract`` decodes each video at ``fps`` (see :mod:`zeroground.video.decode`
for the sampling rule), embeds the frames with a CLIP vision tower in batches,
and appends one L2-normalised ``[T, D]`` array per video id (the file stem) to
an HDF5 file through :class:`~zeroground.features.store.H5FeatureWriter`.
Decoding of the next frames runs in a background thread while the model
encodes the current batch (PyAV releases the GIL while decoding).

File layout: root attributes ``fps``, ``encoder``, ``dim``; each dataset
carries its ``duration`` attribute in seconds (:func:`read_durations`; not one
root attribute, since HDF5 attributes are capped at 64 KiB). Entries are marked complete only after they are fully
written, so a killed run leaves no half entry and the next run skips the
finished videos.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

import numpy as np

from zeroground.errors import ZerogroundError

if TYPE_CHECKING:  # pragma: no cover
    from zeroground.features.encoders import DualEncoder

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")


class ExtractError(ZerogroundError, ValueError):
    """Extraction cannot start (bad inputs, conflicting video ids); the message says why."""


@dataclass
class ExtractReport:
    out: Path
    extracted: list[str] = field(default_factory=list)  # video ids written in this run
    already_done: list[str] = field(default_factory=list)  # found complete and skipped
    failed: dict[str, str] = field(default_factory=dict)  # path -> reason (corrupt/unreadable)
    frames: int = 0  # frames encoded in this run
    seconds: float = 0.0  # wall time of this run
    encode_seconds: float = 0.0  # decode + encode + write, model loading excluded

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.encode_seconds if self.encode_seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def find_videos(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders (recursively, by video suffix) into a sorted, unique list."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found.extend(sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in VIDEO_SUFFIXES))
        elif p.exists():
            found.append(p)
        else:
            raise ExtractError(f"input not found: {p}")
    unique = list(dict.fromkeys(found))
    by_id: dict[str, Path] = {}
    for p in unique:
        if p.stem in by_id:
            raise ExtractError(f"two videos share the id {p.stem!r} (the file stem): {by_id[p.stem]} and {p}")
        by_id[p.stem] = p
    return unique


def encode_video(
    encoder, path: str | Path, fps: float = 1.0, batch_size: int = 64
) -> tuple[np.ndarray, float]:
    """One video -> (L2-normalised features [T, D] float32, duration in seconds)."""
    from zeroground.video.decode import iter_video_frames

    info: dict = {}
    chunks = []
    for batch in _batched(iter_video_frames(path, fps, info=info), batch_size):
        chunks.append(encoder.encode_images(np.stack([f for f, _ in batch]), batch_size=batch_size))
    return np.concatenate(chunks, axis=0), float(info["duration"])


def _batched(it: Iterator, n: int) -> Iterator[list]:
    batch: list = []
    for x in it:
        batch.append(x)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def _produce(
    paths: "queue.Queue", fps: float, batch_size: int, q: "queue.Queue", stop: threading.Event, prep: Callable | None,
    allow_truncated: bool = False,
) -> None:
    """Background decoder: puts ("batch", vid, frames) / ("done", vid, duration) / ("error", path, msg).

    With ``prep`` the frames are preprocessed here (CLIP pixel values), so the
    queue holds small crops instead of full-resolution frames.
    """
    from zeroground.video.decode import VideoError, iter_video_frames

    while not stop.is_set():
        try:
            path = paths.get_nowait()
        except queue.Empty:
            break
        info: dict = {}
        try:
            for batch in _batched(iter_video_frames(path, fps, info=info, allow_truncated=allow_truncated), batch_size):
                frames = np.stack([f for f, _ in batch])  # [B, H, W, 3] uint8
                q.put(("batch", path.stem, frames if prep is None else prep(frames)))
                if stop.is_set():
                    return
            q.put(("done", path.stem, float(info["duration"])))
        except VideoError as err:
            q.put(("error", str(path), str(err)))
        except Exception as err:  # anything else a broken file can throw: report, keep going
            q.put(("error", str(path), f"{type(err).__name__}: {err}"))


def default_decode_workers() -> int:
    """Videos decoded at once: 1 on small machines, up to 4 where cores are plenty."""
    return max(1, min(4, (os.cpu_count() or 1) // 4))


def extract(
    inputs: Sequence[str | Path],
    encoder: "str | DualEncoder",
    out: str | Path,
    *,
    fps: float = 1.0,
    device: str = "cpu",
    dtype: str = "float32",
    batch_size: int = 64,
    progress: bool = True,
    on_video_done: Callable[[str], None] | None = None,
    decode_workers: int | None = None,
    allow_truncated: bool = False,
) -> ExtractReport:
    """Extract CLIP features of every video in ``inputs`` into the HDF5 file ``out``.

    ``encoder`` is a folder, hub id or ``ID@REVISION`` of a dual encoder (CLIP, SigLIP,
    SigLIP 2), or an already loaded :class:`~zeroground.features.encoders.DualEncoder`;
    its name, revision, type, weight fingerprint and dimension are recorded in the file,
    and a file made by another encoder is not extended. ``device`` may be ``auto``;
    ``dtype`` is the vision tower's precision (features are stored as float32).
    Resumable: videos already complete in ``out`` are skipped. Corrupt or
    unreadable videos are reported in ``ExtractReport.failed`` and skipped.
    ``on_video_done`` is called after each video is safely on disk.
    ``decode_workers`` videos are decoded at once (default
    :func:`default_decode_workers`); batches of one video stay in order.
    A video whose decoding stops before its declared end (cut, damaged, a duration that
    lies) is reported and skipped, no features written for it; with ``allow_truncated``
    its features up to that point are written with its real duration.
    """
    import time

    from zeroground.features.store import H5FeatureWriter

    if fps <= 0:
        raise ExtractError(f"--fps must be > 0, got {fps}")
    if batch_size < 1:
        raise ExtractError(f"--batch-size must be >= 1, got {batch_size}")
    out = Path(out)
    if out.suffix.lower() not in (".h5", ".hdf5"):
        raise ExtractError(f"output must be an .h5/.hdf5 file, got {out}")
    paths = find_videos(inputs)
    if not paths:
        raise ExtractError(f"no video files found in {', '.join(map(str, inputs))} (suffixes {', '.join(VIDEO_SUFFIXES)})")
    report = ExtractReport(out=out)
    t0 = time.perf_counter()
    loaded = None if isinstance(encoder, (str, Path)) else encoder
    name = str(encoder) if loaded is None else loaded.name
    with H5FeatureWriter(out, attrs={"fps": float(fps), "encoder": name}) as writer:
        fh = writer._fh  # per-entry duration attrs; the writer's API has no slot for them
        durations = _read_durations(fh)
        todo = []
        for p in paths:
            if writer.has(p.stem) and p.stem in durations:
                report.already_done.append(p.stem)
            else:
                todo.append(p)
        if todo:
            from zeroground.features.encoders import load_encoder

            clip = loaded if loaded is not None else load_encoder(encoder, device=device, dtype=dtype)
            _record_encoder(fh, clip, out)
            workers = default_decode_workers() if decode_workers is None else decode_workers
            _run(todo, clip, writer, fh, durations, fps, batch_size, progress, report, on_video_done, workers,
                 allow_truncated)
    report.seconds = time.perf_counter() - t0
    return report


def _record_encoder(fh, encoder, out: Path) -> None:
    """Write the encoder's identity into the file's root attributes, refusing a file whose
    features another encoder made (mixing them would make every similarity meaningless)."""
    for key, value in encoder.metadata.items():
        if key == "encoder":
            continue  # the name as given: checked on opening, a path may be spelled differently
        if key in fh.attrs and str(fh.attrs[key]) != str(value):
            raise ExtractError(
                f"{out}: holds features with {key} {fh.attrs[key]!r}; encoder {encoder.name!r} has {value!r}. "
                "Write another encoder's features to another file"
            )
    for key, value in encoder.metadata.items():
        if key != "encoder":
            fh.attrs[key] = value


def _read_durations(fh) -> dict[str, float]:
    durations: dict[str, float] = {}
    for name, obj in fh.items():
        if hasattr(obj, "attrs") and "duration" in obj.attrs and obj.attrs.get("complete", False):
            durations[name] = float(obj.attrs["duration"])
    return durations


def _run(todo, clip, writer, fh, durations, fps, batch_size, progress, report, on_video_done, workers,
         allow_truncated: bool = False) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    q: "queue.Queue" = queue.Queue(maxsize=workers + 1)  # bounded: decoded frames are big
    stop = threading.Event()
    paths: "queue.Queue" = queue.Queue()
    for p in todo:
        paths.put(p)
    prep = None
    if str(clip.device) == "cpu":
        # On CPU, resizing in the decoder threads overlaps it with the model; on a GPU
        # the model's device does it faster, so full frames travel.
        prep = functools.partial(clip.preprocess, device="cpu")
    producers = [
        threading.Thread(target=_produce, args=(paths, fps, batch_size, q, stop, prep, allow_truncated), daemon=True)
        for _ in range(max(1, min(workers, len(todo))))
    ]
    for t in producers:
        t.start()
    pending = len(todo)  # videos not yet written or reported
    columns = (
        TextColumn("[bold]extract[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[fps_rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    import time

    t_start = time.perf_counter()
    chunks: dict[str, list[np.ndarray]] = {}
    try:
        with Progress(*columns, disable=not progress, transient=False) as bar:
            task = bar.add_task("", total=len(todo), fps_rate="")
            while True:
                if pending == 0:
                    break
                kind, key, payload = q.get()
                if kind == "batch":
                    encode = clip.encode_images if prep is None else clip.encode_pixels
                    chunks.setdefault(key, []).append(encode(payload))
                    report.frames += len(chunks[key][-1])
                    rate = report.frames / max(1e-9, time.perf_counter() - t_start)
                    bar.update(task, description=key, fps_rate=f"{rate:.1f} frames/s")
                elif kind == "done":
                    feats = np.concatenate(chunks.pop(key), axis=0)  # [T, D]
                    writer.add(key, feats)
                    fh[key].attrs["duration"] = payload
                    durations[key] = payload
                    fh.flush()
                    report.extracted.append(key)
                    pending -= 1
                    bar.advance(task)
                    if on_video_done is not None:
                        on_video_done(key)
                else:  # error
                    chunks.pop(Path(key).stem, None)
                    report.failed[key] = payload
                    pending -= 1
                    if progress:  # the caller gets the full list in the report
                        bar.console.print(f"[yellow]skipped[/] {key}: {payload}")
                    bar.advance(task)
    finally:
        report.encode_seconds = time.perf_counter() - t_start
        stop.set()
        for t in producers:
            while t.is_alive():  # unblock a producer waiting on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    t.join(timeout=0.05)


def read_durations(path: str | Path) -> dict[str, float]:
    """Per-video durations (seconds) recorded by :func:`extract` in an HDF5 feature file."""
    import h5py

    with h5py.File(path, "r") as fh:
        return _read_durations(fh)
