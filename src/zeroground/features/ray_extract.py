"""``zeroground extract --engine ray``: the extraction of :mod:`zeroground.features.extract` on Ray Data.

Pipeline (one Ray Data dataset, streamed)::

    video paths --(CPU tasks: decode + CLIP preprocessing)--> pixel values [T, 3, h, w]
                --(actor pool: CLIP vision tower, num_gpus=1 per actor on GPU)--> features [T, D]
                --(driver)--> one HDF5 shard per output block, written atomically (tmp + rename)

Decoding and preprocessing are the single-process path's own functions
(:func:`zeroground.video.decode.iter_video_frames`, :func:`zeroground.features.clip.preprocess_frames`
on CPU, frames cut into the same ``batch_size`` chunks, each chunk encoded by ``encode_pixels``),
so the features equal ``zeroground extract``'s to float32 rounding.

Shards are written by the driver, not by the workers: the workers then need no shared
filesystem, and the driver keeps the set of videos already on disk, so a block that Ray
re-delivers after a retried task cannot put a video in two shards. A shard is one HDF5
feature file in the single-process layout (root ``fps``/``encoder``/``dim``, per-video
``duration``); ``index.json`` lists which shard holds which video. A shard exists under its
final name only once completely written, so a killed run leaves no half shard and the next
run skips every video found in a shard. Ray is imported only here, only when asked for.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from zeroground.features.extract import ExtractError, ExtractReport, _batched, find_videos
from zeroground.features.store import (
    SHARD_INDEX_FILE,
    SHARD_PREFIX,
    H5FeatureWriter,
    scan_shards,
    write_shard_index,
)
from zeroground.io import atomic_path

# A video whose decoding or encoding kills its worker this many times in a row is a bug
# to report, not something to retry forever (Ray Data's default is -1: forever).
MAX_RETRIES = 4


@dataclass(frozen=True)
class RaySettings:
    """Where and how wide the Ray job runs."""

    address: str | None = None  # None: a local cluster on this machine (or the one already initialised)
    actors: int | None = None  # size of the CLIP actor pool (default: 1 per GPU, else max(1, CPUs // 2))
    num_cpus: int | None = None  # CPUs of the local cluster that is started (default: all)
    videos_per_block: int = 4  # videos per Ray block = per shard


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ExtractError("--engine ray needs Ray Data: pip install 'zeroground[scale]' (ray[data] 2.x)") from None
    return ray


def init_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to ``address`` or start a local cluster, unless Ray is already initialised.

    Returns True when this call started it (the caller shuts it down).
    """
    ray = _require_ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address:
        kwargs["address"] = address
    else:
        kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ExtractError(f"cannot start or reach the Ray cluster {address or '(local)'}: {exc}") from None
    return True


# ----------------------------------------------------------------------------- stage functions


def decode_video_row(row: dict[str, Any], fps: float, batch_size: int, spec,
                     allow_truncated: bool = False) -> dict[str, Any]:
    """Ray task: one video path -> CLIP pixel values ``[T, 3, h, w]`` float32 (or an error)."""
    import torch

    from zeroground.features.clip import preprocess_frames
    from zeroground.video.decode import VideoError, iter_video_frames

    torch.set_num_threads(1)
    path = row["path"]
    info: dict = {}
    chunks = []
    error = ""
    try:
        for batch in _batched(iter_video_frames(path, fps, info=info, allow_truncated=allow_truncated), batch_size):
            frames = np.stack([f for f, _ in batch])  # [B, H, W, 3] uint8
            chunks.append(preprocess_frames(frames, spec=spec, device="cpu").numpy())  # [B, 3, h, w]
        pixels = np.concatenate(chunks, axis=0)
        duration = float(info["duration"])
    except VideoError as err:
        error = str(err)
    except Exception as err:  # anything else a broken file can throw: report, keep going
        error = f"{type(err).__name__}: {err}"
    if error:
        pixels = np.zeros((0, 3, spec.crop_height, spec.crop_width), dtype=np.float32)
        duration = 0.0
    return {"vid": row["vid"], "path": path, "pixels": pixels, "duration": duration, "error": error,
            "chunk": batch_size}


class ClipActor:
    """Ray actor: CLIP vision tower; a batch of videos' pixel values -> their features ``[T, D]``."""

    def __init__(self, encoder: str, device: str = "cpu", batch_size: int = 64, threads: int = 1) -> None:
        import torch

        from zeroground.features.clip import load_clip

        torch.set_num_threads(max(1, threads))
        self.batch_size = batch_size
        self.clip = load_clip(encoder, device=device)

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        # the same chunks as the single-process path: one forward pass per decoder batch
        return np.concatenate([self.clip.encode_pixels(pixels[i:i + self.batch_size])
                               for i in range(0, len(pixels), self.batch_size)], axis=0)  # [T, D]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        feats = []
        for pixels, error in zip(batch["pixels"], batch["error"]):
            if error:
                feats.append(np.zeros((0, self.clip.dim), dtype=np.float32))
            else:
                feats.append(self.encode(np.array(pixels, dtype=np.float32)))  # a writable copy for torch
        return {"vid": batch["vid"], "path": batch["path"], "features": _ragged(feats),
                "duration": batch["duration"], "error": batch["error"]}


def _ragged(arrays: list[np.ndarray]) -> np.ndarray:
    """A 1-d object array of arrays of different lengths (Ray Data's variable-shaped tensor column)."""
    out = np.empty(len(arrays), dtype=object)
    for i, a in enumerate(arrays):
        out[i] = a
    return out


# ----------------------------------------------------------------------------- driver


def _write_shard(folder: Path, rows: list[tuple[str, np.ndarray, float]], attrs: dict[str, Any]) -> str:
    """Write one shard atomically; returns its file name."""
    name = f"{SHARD_PREFIX}{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}.h5"
    with atomic_path(folder / name) as tmp:
        with H5FeatureWriter(tmp, attrs=attrs) as writer:
            for vid, feats, duration in rows:
                writer.add(vid, feats, attrs={"duration": duration})
    return name


def extract_ray(
    inputs: Sequence[str | Path],
    encoder: str,
    out: str | Path,
    *,
    fps: float = 1.0,
    device: str = "cpu",
    batch_size: int = 64,
    settings: RaySettings = RaySettings(),
    merge: bool = False,
    progress: bool = True,
    actor_cls: type = ClipActor,
    decode_fn: Callable[..., dict[str, Any]] = decode_video_row,
    on_shard_written: Callable[[str, list[str]], None] | None = None,
    allow_truncated: bool = False,
) -> ExtractReport:
    """Extract CLIP features of every video in ``inputs`` on Ray into a folder of shards.

    ``out`` is the shard folder; with ``merge`` it is the ``.h5`` file to write and the
    shards live in ``<out>.shards/`` beside it (kept: a rerun resumes from them).
    Corrupt and truncated videos are reported in ``ExtractReport.failed`` and skipped (or,
    with ``allow_truncated``, kept up to where decoding stopped), as in
    :func:`zeroground.features.extract.extract`: both decode with
    :func:`zeroground.video.decode.iter_video_frames`. ``actor_cls``/``decode_fn`` replace the
    stage functions (tests inject faults through them); ``on_shard_written(name, vids)``
    is called after each shard is on disk.
    """
    if fps <= 0:
        raise ExtractError(f"--fps must be > 0, got {fps}")
    if batch_size < 1:
        raise ExtractError(f"--batch-size must be >= 1, got {batch_size}")
    if settings.actors is not None and settings.actors < 1:
        raise ExtractError(f"--actors must be >= 1, got {settings.actors}")
    out = Path(out)
    if merge:
        if out.suffix.lower() not in (".h5", ".hdf5"):
            raise ExtractError(f"--merge writes one HDF5 file: --out must end in .h5, got {out}")
        folder = out.with_name(out.name + ".shards")
    else:
        if out.suffix.lower() in (".h5", ".hdf5"):
            raise ExtractError(f"--engine ray writes a folder of shards: give a folder as --out (or add --merge), got {out}")
        folder = out
    if folder.exists() and not folder.is_dir():
        raise ExtractError(f"{folder} exists and is not a folder")
    paths = find_videos(inputs)
    if not paths:
        raise ExtractError(f"no video files found in {', '.join(map(str, inputs))}")
    t0 = time.perf_counter()
    report = ExtractReport(out=out)
    folder.mkdir(parents=True, exist_ok=True)
    shards = scan_shards(folder)  # name -> (vids, attrs)
    attrs = {"fps": float(fps), "encoder": str(encoder)}
    done: set[str] = set()
    for name, (vids, shard_attrs) in shards.items():
        for key in ("fps", "encoder"):
            if key in shard_attrs and shard_attrs[key] != attrs[key]:
                raise ExtractError(f"{folder / name}: {key} is {shard_attrs[key]!r}, not {attrs[key]!r}; "
                                   "refusing to mix features of different settings (use another --out)")
        done.update(vids)
    todo = [p for p in paths if p.stem not in done]
    report.already_done = [p.stem for p in paths if p.stem in done]
    index = {name: vids for name, (vids, _) in shards.items()}
    if todo:
        from zeroground.features.clip import load_clip

        clip = load_clip(encoder, device="cpu")  # bad encoder -> clear error here, not in a worker
        dims = {int(a["dim"]) for _, a in shards.values() if "dim" in a}
        if dims and dims != {clip.dim}:
            raise ExtractError(f"{folder}: holds {dims.pop()}-d features; encoder {encoder!r} gives {clip.dim}-d")
        # the encoder's identity (weights fingerprint, revision, type), refused when another made the shards
        identity = {k: v for k, v in clip.metadata.items() if k != "encoder"}
        for name, (_, shard_attrs) in shards.items():
            for key, value in identity.items():
                if key in shard_attrs and str(shard_attrs[key]) != str(value):
                    raise ExtractError(
                        f"{folder / name}: holds features with {key} {shard_attrs[key]!r}; encoder {encoder!r} has "
                        f"{value!r}. Write another encoder's features to another folder")
        attrs.update(identity)
        started = init_ray(settings.address, settings.num_cpus)
        try:
            _run_pipeline(todo, clip, encoder, folder, attrs, fps, device, batch_size, settings, report,
                          index, done, progress, actor_cls, decode_fn, on_shard_written, allow_truncated)
        finally:
            report.encode_seconds = time.perf_counter() - t0
            write_shard_index(folder, index, attrs)
            if started:
                import ray

                ray.shutdown()
    elif index:
        write_shard_index(folder, index, next(iter(shards.values()))[1])
    if merge:
        merge_shards(folder, out)
    report.seconds = time.perf_counter() - t0
    return report


def _run_pipeline(todo, clip, encoder, folder, attrs, fps, device, batch_size, settings, report, index, done,
                  progress, actor_cls, decode_fn, on_shard_written, allow_truncated: bool = False) -> None:
    import ray
    import ray.data
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    ray.data.DataContext.get_current().enable_progress_bars = False  # ours is the one to read
    gpus = float(ray.cluster_resources().get("GPU", 0)) if device.startswith("cuda") else 0.0
    cpus = int(ray.cluster_resources().get("CPU", 1))
    actors = settings.actors or (int(gpus) if gpus >= 1 else max(1, cpus // 2))
    per_block = max(1, settings.videos_per_block)
    items = [{"path": str(p), "vid": p.stem} for p in todo]
    ds = ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // per_block)))
    fn_kwargs = {"fps": fps, "batch_size": batch_size, "spec": clip.spec}
    if allow_truncated:  # only when asked, so a replacement decode_fn needs no such parameter
        fn_kwargs["allow_truncated"] = True
    ds = ds.map(decode_fn, fn_kwargs=fn_kwargs,
                num_cpus=1, max_retries=MAX_RETRIES)
    ds = ds.map_batches(
        actor_cls,
        fn_constructor_kwargs={"encoder": encoder, "device": device, "batch_size": batch_size,
                               "threads": 1 if gpus else max(1, cpus // actors)},
        batch_size=per_block,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=1 if gpus else 0,
        num_cpus=0 if gpus else 1,
        max_restarts=MAX_RETRIES,
        max_task_retries=MAX_RETRIES,
    )
    columns = (TextColumn("[bold]extract (ray)[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn())
    t_start = time.perf_counter()
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("", total=len(todo), rate="")
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            rows = []
            for vid, path, feats, duration, error in zip(batch["vid"], batch["path"], batch["features"],
                                                         batch["duration"], batch["error"]):
                vid, path, error = str(vid), str(path), str(error)
                if vid in done or path in report.failed:
                    continue  # a block re-delivered after a retry: already on disk / reported
                if error:
                    report.failed[path] = error
                    if progress:
                        bar.console.print(f"[yellow]skipped[/] {path}: {error}")
                    bar.advance(task)
                    continue
                rows.append((vid, np.asarray(feats, dtype=np.float32), float(duration)))
            if rows:
                name = _write_shard(folder, rows, attrs)
                vids = [r[0] for r in rows]
                index[name] = vids
                done.update(vids)
                report.extracted.extend(vids)
                report.frames += sum(len(r[1]) for r in rows)
                write_shard_index(folder, index, attrs)
                bar.advance(task, len(rows))
                rate = report.frames / max(1e-9, time.perf_counter() - t_start)
                bar.update(task, description=vids[-1], rate=f"{rate:.1f} frames/s")
                if on_shard_written is not None:
                    on_shard_written(name, vids)


def merge_shards(folder: str | Path, out: str | Path) -> Path:
    """Write every video of a shard folder into one HDF5 feature file (atomically), in
    the layout of single-process ``zeroground extract``."""
    from zeroground.features.store import FeatureStore

    out = Path(out)
    with FeatureStore.open(folder) as store:
        keys = ("fps", "encoder", "dim", "encoder_revision", "encoder_type", "encoder_fingerprint")
        attrs = {k: store.attrs[k] for k in keys if k in store.attrs}
        with atomic_path(out) as tmp:
            with H5FeatureWriter(tmp, attrs=attrs) as writer:
                for vid in store.video_ids:
                    writer.add(vid, store[vid], attrs=store.entry_attrs(vid))
    return out


__all__ = ["RaySettings", "extract_ray", "merge_shards", "init_ray", "ClipActor", "decode_video_row",
           "SHARD_INDEX_FILE"]
