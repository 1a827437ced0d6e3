"""The video library on disk: manifest, per-video features, flat search matrix, FAISS file.

Layout of a library folder ``LIB``::

    manifest.json   encoder (name + fingerprint), dim, fps, the videos (id, file, duration, frames)
    features.h5     per-video L2-normalised frame features [T, D] (zeroground.features.extract)
    index.h5        ``vectors`` [N, D] float32 (all frames, video after video, contiguous so it
                    is memory-mapped, not read), ``offsets`` [V + 1] int64, ``video_ids`` [V]
    frames.faiss    an IVF index of the same vectors, written when N >= ``faiss_min_frames``
    videos/         the indexed video files (hard links where possible, else copies), so the
                    server only ever reads files inside the library

``manifest.json`` is written last and atomically: it is the commit point. A library whose
``index.h5`` does not list the manifest's videos (a run killed between the two) is detected
on opening and repaired by running ``zeroground index`` again; extraction resumes where it
stopped, because ``features.h5`` marks every finished video.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from zeroground.errors import ZerogroundError

MANIFEST = "manifest.json"
FEATURES = "features.h5"
INDEX = "index.h5"
FAISS_FILE = "frames.faiss"
VIDEOS_DIR = "videos"
FORMAT = "zeroground-library"
FORMAT_VERSION = 1
# Exact matrix products stay below ~0.1 s per query up to this many frames on 2 cores; above
# it the FAISS IVF index answers stage 1 (benchmarks/search_latency.py measures both).
FAISS_MIN_FRAMES = 200_000


class LibraryError(ZerogroundError, ValueError):
    """A library cannot be built, opened or searched as asked; the message says why."""


def encoder_fingerprint(name: str) -> str:
    """Identity of an encoder's weights: a folder's config + weight sizes, else the hub id.

    Two paths to the same saved model give the same fingerprint, so a moved encoder folder
    still matches the library it built.
    """
    p = Path(name).expanduser()
    h = hashlib.sha256()
    if p.is_dir():
        cfg = p / "config.json"
        if cfg.exists():
            h.update(cfg.read_bytes())
        for f in sorted(p.iterdir()):
            if f.suffix in (".safetensors", ".bin"):
                h.update(f"{f.name}:{f.stat().st_size}".encode())
    else:
        h.update(f"hub:{name}".encode())
    return h.hexdigest()[:20]


@dataclass
class VideoEntry:
    id: str
    file: str | None  # path relative to the library folder (None: features only, no playback)
    duration: float  # seconds
    frames: int  # feature frames in the index


@dataclass
class Library:
    """An opened library. ``vectors`` [N, D] is memory-mapped from ``index.h5``."""

    root: Path
    encoder: str
    fingerprint: str
    dim: int
    fps: float
    videos: list[VideoEntry]
    vectors: np.ndarray = field(repr=False)  # [N, D] float32, L2-normalised rows
    offsets: np.ndarray = field(repr=False)  # [V + 1] int64: video i owns rows offsets[i]:offsets[i+1]
    faiss_index: object | None = field(default=None, repr=False)
    _by_id: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {v.id: i for i, v in enumerate(self.videos)}

    # ------------------------------------------------------------------ reading
    @classmethod
    def open(cls, root: str | Path, *, load_faiss: bool = True) -> "Library":
        root = Path(root)
        manifest = _read_manifest(root)
        videos = [VideoEntry(**v) for v in manifest["videos"]]
        vectors, offsets, ids = _map_index(root / INDEX, int(manifest["dim"]))
        if ids != [v.id for v in videos]:
            raise LibraryError(
                f"library {root}: {INDEX} does not match {MANIFEST} (an indexing run was interrupted); "
                f"run `zeroground index --out {root}` again to finish it"
            )
        faiss_index = None
        if load_faiss and (root / FAISS_FILE).exists():
            import faiss

            faiss_index = faiss.read_index(str(root / FAISS_FILE))
            if faiss_index.ntotal != len(vectors):
                raise LibraryError(f"library {root}: {FAISS_FILE} holds {faiss_index.ntotal} vectors, "
                                   f"the index {len(vectors)}; run `zeroground index --out {root}` again")
        return cls(root, manifest["encoder"], manifest["fingerprint"], int(manifest["dim"]), float(manifest["fps"]),
                   videos, vectors, offsets, faiss_index)

    def __len__(self) -> int:
        return len(self.videos)

    def video(self, video_id: str) -> VideoEntry:
        """The entry of ``video_id``; ids are names, never paths, so ``../x`` is simply unknown."""
        i = self._by_id.get(video_id) if isinstance(video_id, str) else None
        if i is None:
            raise LibraryError(f"unknown video {video_id!r}: not in library {self.root} (GET /api/videos lists them)")
        return self.videos[i]

    def features(self, video_id: str) -> np.ndarray:
        """[T, D] frame features of one video (a view of the search matrix)."""
        i = self._by_id[self.video(video_id).id]
        return self.vectors[self.offsets[i]:self.offsets[i + 1]]

    def video_path(self, video_id: str) -> Path | None:
        entry = self.video(video_id)
        return None if entry.file is None else self.root / entry.file

    def check_encoder(self, name: str) -> None:
        """Raise unless ``name`` is the encoder this library was indexed with."""
        if name != self.encoder and encoder_fingerprint(name) != self.fingerprint:
            raise LibraryError(
                f"encoder mismatch: library {self.root} was indexed with {self.encoder!r}, the query would be "
                f"embedded with {name!r}; frame and sentence vectors of different encoders are not comparable "
                "(search with the library's encoder, or index the videos again with this one)"
            )


def _read_manifest(root: Path) -> dict:
    path = root / MANIFEST
    if not path.exists():
        raise LibraryError(f"no video library at {root} (no {MANIFEST}); build one with `zeroground index VIDEOS --encoder ENC --out {root}`")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise LibraryError(f"{path}: unreadable manifest ({err})") from None
    if manifest.get("format") != FORMAT or int(manifest.get("version", 0)) > FORMAT_VERSION:
        raise LibraryError(f"{path}: not a zeroground library manifest of version <= {FORMAT_VERSION}")
    return manifest


def _map_index(path: Path, dim: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Memory-map ``vectors`` of ``index.h5`` (contiguous dataset), read offsets and ids."""
    import h5py

    if not path.exists():
        raise LibraryError(f"{path} is missing; run `zeroground index --out {path.parent}` again")
    with h5py.File(path, "r") as fh:
        ds = fh["vectors"]
        shape = ds.shape
        offset = ds.id.get_offset()
        offsets = fh["offsets"][()].astype(np.int64)
        ids = [s.decode() if isinstance(s, bytes) else str(s) for s in fh["video_ids"][()]]
    if shape[0] == 0:
        vectors = np.zeros((0, dim), np.float32)
    elif offset is None:  # not contiguous (written elsewhere): read it
        with h5py.File(path, "r") as fh:
            vectors = fh["vectors"][()]
    else:
        vectors = np.memmap(path, dtype=np.float32, mode="r", offset=offset, shape=shape)
    return vectors, offsets, ids


# ---------------------------------------------------------------------- building


@dataclass
class IndexReport:
    root: Path
    added: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    frames: int = 0  # frames in the whole index after this run
    faiss: bool = False
    seconds: float = 0.0


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.part")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def index_videos(
    inputs: Sequence[str | Path],
    out: str | Path,
    encoder: str | None = None,
    *,
    fps: float = 1.0,
    device: str = "cpu",
    batch_size: int = 64,
    progress: bool = True,
    faiss_min_frames: int = FAISS_MIN_FRAMES,
) -> IndexReport:
    """Add the videos in ``inputs`` (files or folders) to the library ``out``, creating it.

    Resumable: features are extracted by :func:`zeroground.features.extract.extract` into
    ``out/features.h5``, which skips finished videos. A video whose id (file stem) is already
    in the library with the same size is skipped; with another content it is an error.
    Corrupt videos are reported in ``IndexReport.failed``; the others are indexed.
    """
    from zeroground.features.extract import extract, find_videos

    t0 = time.perf_counter()
    root = Path(out)
    old = _read_manifest(root) if (root / MANIFEST).exists() else None
    if old is not None:
        if encoder is not None and encoder != old["encoder"] and encoder_fingerprint(encoder) != old["fingerprint"]:
            raise LibraryError(f"library {root} was indexed with encoder {old['encoder']!r}, not {encoder!r}; "
                               "one library holds one encoder's vectors (use another --out)")
        if abs(float(old["fps"]) - fps) > 1e-9:
            raise LibraryError(f"library {root} samples {old['fps']} frames/s, not {fps}; keep --fps {old['fps']}")
        encoder = encoder if encoder is not None else old["encoder"]
    elif encoder is None:
        raise LibraryError("a new library needs --encoder (a CLIP folder or a cached hub id)")
    report = IndexReport(root)
    paths = find_videos(inputs) if inputs else []
    known = {v["id"]: v for v in (old["videos"] if old else [])}
    todo: list[Path] = []
    for p in paths:
        entry = known.get(p.stem)
        if entry is not None:
            have = root / entry["file"] if entry.get("file") else None
            if have is not None and have.exists() and have.stat().st_size == p.stat().st_size:
                report.already.append(p.stem)
                continue
            raise LibraryError(f"video id {p.stem!r} is already in library {root} with other content; rename {p}")
        dst = root / VIDEOS_DIR / f"{p.stem}{p.suffix.lower()}"
        if not dst.exists() or dst.stat().st_size != p.stat().st_size:
            _link_or_copy(p, dst)
        todo.append(dst)
    root.mkdir(parents=True, exist_ok=True)
    durations: dict[str, float] = {}
    if todo:
        rep = extract(todo, encoder, root / FEATURES, fps=fps, device=device, batch_size=batch_size, progress=progress)
        for bad, reason in rep.failed.items():
            report.failed[bad] = reason
            Path(bad).unlink(missing_ok=True)  # a corrupt file stays out of the library
        report.added = [p.stem for p in todo if str(p) not in rep.failed]
    from zeroground.features.extract import read_durations

    if (root / FEATURES).exists():
        durations = read_durations(root / FEATURES)
    entries = list(old["videos"]) if old else []
    files = {p.stem: p for p in todo}
    for vid in report.added:
        entries.append({"id": vid, "file": str(files[vid].relative_to(root)), "duration": durations[vid], "frames": 0})
    _write_index(root, encoder, fps, entries, faiss_min_frames, report)
    report.seconds = time.perf_counter() - t0
    return report


def add_features(
    root: str | Path,
    items: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]],
    durations: Mapping[str, float],
    encoder: str,
    *,
    fps: float = 1.0,
    faiss_min_frames: int = FAISS_MIN_FRAMES,
    progress: Callable[[int], None] | None = None,
) -> IndexReport:
    """Build or extend a library from precomputed features (no video files: search only).

    For feature files of the standard benchmarks and for benchmarks of the index itself.
    """
    from zeroground.features.store import H5FeatureWriter

    t0 = time.perf_counter()
    root = Path(root)
    old = _read_manifest(root) if (root / MANIFEST).exists() else None
    if old is not None:
        Library.open(root, load_faiss=False).check_encoder(encoder)
    entries = list(old["videos"]) if old else []
    known = {e["id"] for e in entries}
    report = IndexReport(root)
    pairs = items.items() if isinstance(items, Mapping) else items
    with H5FeatureWriter(root / FEATURES, attrs={"fps": float(fps), "encoder": encoder}) as writer:
        for n, (vid, arr) in enumerate(pairs):
            if vid in known:
                report.already.append(vid)
                continue
            writer.add(vid, np.asarray(arr, np.float32), attrs={"duration": float(durations[vid])})
            entries.append({"id": vid, "file": None, "duration": float(durations[vid]), "frames": 0})
            known.add(vid)
            report.added.append(vid)
            if progress is not None:
                progress(n)
    _write_index(root, encoder, fps, entries, faiss_min_frames, report)
    report.seconds = time.perf_counter() - t0
    return report


def _write_index(root: Path, encoder: str, fps: float, entries: list[dict], faiss_min_frames: int,
                 report: IndexReport) -> None:
    """Flat matrix (index.h5), FAISS file when large, then the manifest (the commit point)."""
    import h5py

    from zeroground.io import atomic_path, atomic_write_json

    feats_path = root / FEATURES
    dim = None
    counts = []
    if entries:
        with h5py.File(feats_path, "r") as src:
            for e in entries:
                ds = src[e["id"]]
                counts.append(int(ds.shape[0]))
                dim = int(ds.shape[1])
    else:
        with h5py.File(feats_path, "r") if feats_path.exists() else _null() as src:
            dim = int(src.attrs["dim"]) if src is not None and "dim" in src.attrs else 0
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # [V + 1]
    total = int(offsets[-1])
    with atomic_path(root / INDEX) as tmp:
        with h5py.File(tmp, "w") as dst, h5py.File(feats_path, "r") as src:
            vec = dst.create_dataset("vectors", shape=(total, dim or 0), dtype=np.float32)  # contiguous
            for i, e in enumerate(entries):
                vec[offsets[i]:offsets[i + 1]] = src[e["id"]][()]
            dst.create_dataset("offsets", data=offsets)
            dst.create_dataset("video_ids", data=np.array([e["id"] for e in entries], dtype=h5py.string_dtype()))
    for e, c in zip(entries, counts):
        e["frames"] = c
    faiss_path = root / FAISS_FILE
    report.frames = total
    if total >= faiss_min_frames and total > 0:
        _write_faiss(root / INDEX, faiss_path, total, int(dim))
        report.faiss = True
    else:
        faiss_path.unlink(missing_ok=True)
    atomic_write_json(root / MANIFEST, {
        "format": FORMAT, "version": FORMAT_VERSION, "encoder": encoder, "fingerprint": encoder_fingerprint(encoder),
        "dim": int(dim or 0), "fps": float(fps), "frames": total, "faiss": report.faiss, "videos": entries,
    })


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def faiss_lists(n: int) -> int:
    """IVF cells: ~sqrt(N) (faiss' guideline 4*sqrt(N) trains 16x slower for little recall here)."""
    return int(max(1, min(4096, round(np.sqrt(n)))))


def _write_faiss(index_h5: Path, out: Path, total: int, dim: int) -> None:
    """IVF with 8-bit scalar-quantised vectors: stage 1 only ranks candidate videos, which
    stage 2 rescores exactly from the float32 matrix, so 4x smaller codes cost no accuracy there."""
    import faiss

    from zeroground.io import atomic_path

    vectors, _, _ = _map_index(index_h5, dim)
    nlist = faiss_lists(total)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                          faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(total, size=min(total, 40 * nlist), replace=False))
    index.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
    step = 200_000
    for i in range(0, total, step):
        index.add(np.ascontiguousarray(vectors[i:i + step], dtype=np.float32))
    with atomic_path(out) as tmp:
        faiss.write_index(index, str(tmp))
