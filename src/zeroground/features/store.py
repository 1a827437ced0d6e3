"""Per-video feature arrays served lazily from disk: frame features ``[T, D]`` (CLIP, what
``zeroground extract`` writes) or token features ``[T, K, D]`` (K tokens per frame, e.g. BLIP-2
Q-Former outputs, 32 x 256, as TFVTG/TAG use). A store holds one layout; :attr:`FeatureStore.tokens`
says which (``None`` for frame features, else K).

Three layouts are read: a folder of HDF5 shards with an ``index.json`` (``extract --engine ray``), a folder of ``<vid>.npy`` files (the layout of PSVL/LFVMR's
released features) and one HDF5 file with one dataset per video id (at the root, or under
a group ``features``). Nothing is loaded at open; each array is read, and checked (rank 2 or 3,
finite, the store's dimension), when asked for, so a bad array is named the moment it is
met instead of surfacing as a NaN loss hours later. :meth:`FeatureStore.require` checks a
whole split before training and names *all* missing videos at once.

Metadata (``fps``, ``encoder``, ...) lives in the HDF5 file's root attributes, or in an
optional ``attrs.json`` beside the ``.npy`` files.

Writing is HDF5 only: :func:`write_features_h5` writes a whole file atomically;
:class:`H5FeatureWriter` appends one video at a time for resumable extraction.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from zeroground.errors import ZerogroundError
from zeroground.io import atomic_path

H5_SUFFIXES = (".h5", ".hdf5")
FEATURES_GROUP = "features"
# Root attribute set by H5FeatureWriter: in such files an entry counts only once its
# dataset carries complete=True, so a kill mid-write leaves no half entry behind.
WRITER_MARK = "zeroground_writer"
NPY_ATTRS_FILE = "attrs.json"
# A folder of shards (``zeroground extract --engine ray``): shard-*.h5 files, each a feature
# file in the H5FeatureWriter layout, and an index naming the videos of each shard.
SHARD_PREFIX = "shard-"
SHARD_INDEX_FILE = "index.json"
SHARD_FORMAT = "zeroground-shards/1"


class FeatureError(ZerogroundError, ValueError):
    """A feature file or array is unusable; the message names the file and the video."""


class MissingFeaturesError(FeatureError):
    """Some requested videos have no features; ``.missing`` lists them all."""

    def __init__(self, message: str, missing: list[str]) -> None:
        super().__init__(message)
        self.missing = missing


def _check_array(arr: np.ndarray, where: str, dim: int | None, tokens: int | None | bool = False) -> np.ndarray:
    """Validate one video's features: ``[T, D]``, or ``[T, K, D]`` token features.

    ``dim``: the store's D (None: any). ``tokens``: the store's K (None: frame features
    required; False: either layout accepted).
    """
    if arr.ndim not in (2, 3):
        raise FeatureError(
            f"{where}: expected [T, D] frame features or [T, K, D] token features, found shape {tuple(arr.shape)}"
        )
    if arr.shape[0] == 0:
        raise FeatureError(f"{where}: array has no time steps (shape {tuple(arr.shape)})")
    if tokens is not False:
        k = arr.shape[1] if arr.ndim == 3 else None
        if k != tokens:
            have = f"[T, K={k}, D] token features" if k is not None else "[T, D] frame features"
            want = f"[T, K={tokens}, D] token features" if tokens is not None else "[T, D] frame features"
            raise FeatureError(f"{where}: {have} in a store of {want}; one store holds one layout")
    if arr.ndim == 3 and arr.shape[1] == 0:
        raise FeatureError(f"{where}: token features with K = 0 tokens per frame (shape {tuple(arr.shape)})")
    if dim is not None and arr.shape[-1] != dim:
        raise FeatureError(f"{where}: feature dimension {arr.shape[-1]} differs from the store's {dim}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise FeatureError(f"{where}: expected real numbers, found dtype {arr.dtype}")
    arr = np.asarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))
        t = int(bad[0, 0])
        raise FeatureError(f"{where}: {len(bad)} non-finite value(s) (NaN/inf), first at time step {t}")
    return arr


class FeatureStore:
    """Lazily serves float32 ``[T, D]`` arrays by video id. Open with :meth:`FeatureStore.open`."""

    path: Path
    attrs: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> "FeatureStore":
        """Open a folder of ``<vid>.npy`` files or one ``.h5``/``.hdf5`` file."""
        path = Path(path)
        if not path.exists():
            raise FeatureError(f"{path}: feature store not found (expected a folder of <vid>.npy or a .h5 file)")
        if path.is_dir():
            if _is_shard_folder(path):
                return ShardedH5Store(path)
            return NpyFolderStore(path)
        if path.name == SHARD_INDEX_FILE:
            return ShardedH5Store(path.parent)
        if path.suffix.lower() in H5_SUFFIXES:
            return H5FeatureStore(path)
        raise FeatureError(f"{path}: not a feature store (expected a folder of <vid>.npy or a .h5/.hdf5 file)")

    # -- to implement
    @property
    def video_ids(self) -> list[str]:
        raise NotImplementedError

    def shape(self, vid: str) -> tuple[int, ...]:
        """``(T, D)`` (or ``(T, K, D)`` for token features) of one video, from metadata only."""
        raise NotImplementedError

    def _read(self, vid: str) -> np.ndarray:
        raise NotImplementedError

    def _where(self, vid: str) -> str:
        raise NotImplementedError

    # -- shared
    @property
    def dim(self) -> int:
        """Feature dimension D: the ``dim`` attribute if stored, else that of the first video."""
        if getattr(self, "_dim", None) is None:
            if "dim" in self.attrs:
                self._dim = int(self.attrs["dim"])
            else:
                ids = self.video_ids
                if not ids:
                    raise FeatureError(f"{self.path}: empty feature store: no dimension to report")
                self._dim = int(self.shape(ids[0])[-1])
        return self._dim

    @property
    def tokens(self) -> int | None:
        """Tokens per frame K of a ``[T, K, D]`` token store; None for ``[T, D]`` frame features."""
        if not hasattr(self, "_tokens"):
            ids = self.video_ids
            shp = self.shape(ids[0]) if ids else ()
            self._tokens = int(shp[1]) if len(shp) == 3 else None
        return self._tokens

    @property
    def fps(self) -> float | None:
        """Feature frames per second, when the store records it (attribute ``fps``)."""
        value = self.attrs.get("fps")
        return None if value is None else float(value)

    def __getitem__(self, vid: str) -> np.ndarray:
        if vid not in self:
            raise MissingFeaturesError(f"{self.path}: no features for video {vid!r}", [vid])
        return _check_array(self._read(vid), self._where(vid), self.dim, self.tokens)  # [T, D] or [T, K, D]

    def get(self, vid: str, default: Any = None) -> Any:
        return self[vid] if vid in self else default

    def __contains__(self, vid: object) -> bool:
        return vid in self._id_set()

    def _id_set(self) -> set[str]:
        if getattr(self, "_ids", None) is None:
            self._ids = set(self.video_ids)
        return self._ids

    def __len__(self) -> int:
        return len(self.video_ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.video_ids)

    def require(self, vids: Iterable[str]) -> None:
        """Raise :class:`MissingFeaturesError` naming every video of ``vids`` the store lacks."""
        missing = sorted({v for v in vids if v not in self})
        if missing:
            shown = ", ".join(missing[:50]) + (f" ... (+{len(missing) - 50} more)" if len(missing) > 50 else "")
            raise MissingFeaturesError(
                f"{self.path}: features missing for {len(missing)} video(s): {shown}", missing
            )

    def check_shapes(self, vids: Iterable[str] | None = None) -> None:
        """Check every (or the given) video's shape against the store's dimension, from metadata only."""
        dim = self.dim
        for vid in self.video_ids if vids is None else vids:
            shp = self.shape(vid)
            k = shp[1] if len(shp) == 3 else None
            if shp[-1] != dim or shp[0] == 0 or k != self.tokens:
                want = f"[T>0, {dim}]" if self.tokens is None else f"[T>0, {self.tokens}, {dim}]"
                raise FeatureError(f"{self._where(vid)}: shape {tuple(shp)} does not fit {want}")

    def entry_attrs(self, vid: str) -> dict[str, Any]:
        """Per-video metadata (HDF5 dataset attributes, e.g. ``duration``); empty for ``.npy`` folders."""
        return {}

    def durations(self, fps: float | None = None) -> dict[str, float]:
        """Video durations in seconds.

        A per-video ``duration`` attribute (written by the extractor from the decoded
        video) wins unless ``fps`` is given; otherwise ``T / fps``, with ``fps`` from the
        store's attrs.
        """
        out: dict[str, float] = {}
        rate = self.fps if fps is None else fps
        for vid in self.video_ids:
            recorded = self.entry_attrs(vid).get("duration") if fps is None else None
            if recorded is not None:
                out[vid] = float(recorded)
                continue
            if rate is None or not (rate > 0) or not math.isfinite(rate):
                raise FeatureError(
                    f"{self.path}: cannot compute durations: the store records no positive 'fps' "
                    f"attribute (nor a 'duration' for video {vid!r}); give fps"
                )
            out[vid] = self.shape(vid)[0] / rate
        return out

    def close(self) -> None:
        pass

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, videos={len(self)})"


class NpyFolderStore(FeatureStore):
    """A folder of ``<vid>.npy`` files (optional ``attrs.json`` with fps, encoder, ...)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._dim = None
        self._ids = None
        self._video_ids: list[str] | None = None
        attrs_file = self.path / NPY_ATTRS_FILE
        self.attrs = {}
        if attrs_file.exists():
            try:
                self.attrs = dict(json.loads(attrs_file.read_text()))
            except (json.JSONDecodeError, TypeError, ValueError) as exc:
                raise FeatureError(f"{attrs_file}: not a JSON object ({exc})") from None

    @property
    def video_ids(self) -> list[str]:
        if self._video_ids is None:
            self._video_ids = sorted(p.name[:-4] for p in os.scandir(self.path) if p.name.endswith(".npy"))
        return self._video_ids

    def _file(self, vid: str) -> Path:
        return self.path / f"{vid}.npy"

    def _where(self, vid: str) -> str:
        return f"{self._file(vid)} (video {vid!r})"

    def _load(self, vid: str, mmap: bool) -> np.ndarray:
        try:
            return np.load(self._file(vid), mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise FeatureError(f"{self._where(vid)}: unreadable .npy file ({exc})") from None

    def shape(self, vid: str) -> tuple[int, ...]:
        shp = self._load(vid, mmap=True).shape
        if len(shp) not in (2, 3):
            raise FeatureError(f"{self._where(vid)}: expected [T, D] or [T, K, D] features, found shape {shp}")
        return tuple(int(x) for x in shp)

    def _read(self, vid: str) -> np.ndarray:
        return self._load(vid, mmap=False)


class H5FeatureStore(FeatureStore):
    """One HDF5 file: a dataset per video id at the root or under group ``features``.

    The file handle is opened on first use and re-opened in a forked child process
    (DataLoader workers), because h5py handles must not cross a fork.
    """

    def __init__(self, path: str | Path) -> None:
        import h5py

        self.path = Path(path)
        self._dim = None
        self._ids = None
        self._fh: Any = None
        self._pid = -1
        try:
            with h5py.File(self.path, "r") as fh:
                self.attrs = {k: _plain(v) for k, v in fh.attrs.items()}
                group = fh[FEATURES_GROUP] if isinstance(fh.get(FEATURES_GROUP), h5py.Group) else fh
                self._prefix = f"{FEATURES_GROUP}/" if group is not fh else ""
                strict = bool(fh.attrs.get(WRITER_MARK, False))
                ids = []
                for name, obj in group.items():
                    if not isinstance(obj, h5py.Dataset):
                        continue
                    if strict and not bool(obj.attrs.get("complete", False)):
                        continue  # half-written by a killed writer: treat as absent
                    ids.append(name)
                self._video_ids = sorted(ids)
        except OSError as exc:
            raise FeatureError(f"{self.path}: not a readable HDF5 file ({exc})") from None

    @property
    def video_ids(self) -> list[str]:
        return self._video_ids

    def _handle(self) -> Any:
        import h5py

        if self._fh is None or self._pid != os.getpid():
            self._fh = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._fh

    def _where(self, vid: str) -> str:
        return f"{self.path}:/{self._prefix}{vid} (video {vid!r})"

    def shape(self, vid: str) -> tuple[int, ...]:
        shp = self._handle()[self._prefix + vid].shape
        if len(shp) not in (2, 3):
            raise FeatureError(f"{self._where(vid)}: expected [T, D] or [T, K, D] features, found shape {shp}")
        return tuple(int(x) for x in shp)

    def _read(self, vid: str) -> np.ndarray:
        return self._handle()[self._prefix + vid][()]

    def entry_attrs(self, vid: str) -> dict[str, Any]:
        attrs = self._handle()[self._prefix + vid].attrs
        return {k: _plain(v) for k, v in attrs.items() if k != "complete"}

    def close(self) -> None:
        if self._fh is not None and self._pid == os.getpid():
            self._fh.close()
        self._fh = None


def _is_shard_folder(path: Path) -> bool:
    if (path / SHARD_INDEX_FILE).is_file():
        return True
    return any(e.name.startswith(SHARD_PREFIX) and e.name.endswith(".h5") for e in os.scandir(path))


def scan_shards(folder: str | Path) -> dict[str, tuple[list[str], dict[str, Any]]]:
    """Every complete shard of ``folder``: file name -> (its complete video ids, root attrs).

    Reads the shard files themselves, not the index, so a run killed between writing a
    shard and updating the index loses nothing. Temporary files of a killed writer
    (``.shard-*.tmp``) are not shards and are removed.
    """
    import h5py

    folder = Path(folder)
    out: dict[str, tuple[list[str], dict[str, Any]]] = {}
    if not folder.is_dir():
        return out
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith(f".{SHARD_PREFIX}") and entry.name.endswith(".tmp"):
            os.unlink(entry.path)  # left by a killed run: never renamed, so never complete
            continue
        if not (entry.name.startswith(SHARD_PREFIX) and entry.name.endswith(".h5")):
            continue
        try:
            with h5py.File(entry.path, "r") as fh:
                attrs = {k: _plain(v) for k, v in fh.attrs.items() if k != WRITER_MARK}
                strict = bool(fh.attrs.get(WRITER_MARK, False))  # as H5FeatureStore: marks count only there
                vids = sorted(n for n, o in fh.items() if isinstance(o, h5py.Dataset)
                              and (not strict or o.attrs.get("complete", False)))
        except OSError as exc:
            raise FeatureError(f"{entry.path}: not a readable HDF5 shard ({exc})") from None
        out[entry.name] = (vids, attrs)
    return out


def write_shard_index(folder: str | Path, shards: Mapping[str, list[str]], attrs: Mapping[str, Any]) -> Path:
    """Write ``folder/index.json`` (atomically): which shard holds which video, and the attrs."""
    from zeroground.io import atomic_write_json

    body = {"format": SHARD_FORMAT, "attrs": {k: _plain(v) for k, v in attrs.items()},
            "shards": {name: list(vids) for name, vids in sorted(shards.items())}}
    return atomic_write_json(Path(folder) / SHARD_INDEX_FILE, body, indent=None)


class ShardedH5Store(FeatureStore):
    """A folder of HDF5 shards served as one store (``zeroground extract --engine ray``).

    The video -> shard map comes from ``index.json`` when present and consistent with the
    files, else from reading every shard. A video in two shards is an error (it names both).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._dim = None
        self._ids = None
        self._stores: dict[str, H5FeatureStore] = {}
        index_file = self.path / SHARD_INDEX_FILE
        shards: dict[str, list[str]] | None = None
        self.attrs = {}
        if index_file.is_file():
            try:
                body = json.loads(index_file.read_text())
                if body.get("format") != SHARD_FORMAT:
                    raise ValueError(f"format {body.get('format')!r}, expected {SHARD_FORMAT!r}")
                shards = {str(k): [str(v) for v in vs] for k, vs in dict(body["shards"]).items()}
                self.attrs = dict(body.get("attrs", {}))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise FeatureError(f"{index_file}: not a zeroground shard index ({exc})") from None
            on_disk = {e.name for e in os.scandir(self.path) if e.name.startswith(SHARD_PREFIX) and e.name.endswith(".h5")}
            if set(shards) != on_disk:
                shards = None  # index older than the files (killed between shard and index): re-read
        if shards is None:
            scanned = scan_shards(self.path)
            shards = {name: vids for name, (vids, _) in scanned.items()}
            if scanned:
                self.attrs = dict(next(iter(scanned.values()))[1])
        self._where_is: dict[str, str] = {}
        for name, vids in shards.items():
            for vid in vids:
                if vid in self._where_is:
                    raise FeatureError(f"{self.path}: video {vid!r} is in two shards, {self._where_is[vid]} and {name}")
                self._where_is[vid] = name
        self._video_ids = sorted(self._where_is)

    @property
    def video_ids(self) -> list[str]:
        return self._video_ids

    @property
    def shards(self) -> list[str]:
        return sorted(set(self._where_is.values()))

    def _store(self, vid: str) -> H5FeatureStore:
        name = self._where_is[vid]
        if name not in self._stores:
            self._stores[name] = H5FeatureStore(self.path / name)
        return self._stores[name]

    def _where(self, vid: str) -> str:
        return self._store(vid)._where(vid)

    def shape(self, vid: str) -> tuple[int, int]:
        return self._store(vid).shape(vid)

    def _read(self, vid: str) -> np.ndarray:
        return self._store(vid)._read(vid)

    def entry_attrs(self, vid: str) -> dict[str, Any]:
        return self._store(vid).entry_attrs(vid)

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        self._stores = {}


def _plain(value: Any) -> Any:
    """HDF5 attribute → plain Python value (numpy scalars/bytes are awkward in JSON and configs)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _items(items: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]]) -> Iterable[tuple[str, np.ndarray]]:
    return items.items() if isinstance(items, Mapping) else items


def _check_vid(vid: str, path: Path) -> None:
    if not isinstance(vid, str) or not vid or "/" in vid or vid in (".", ".."):
        raise FeatureError(f"{path}: invalid video id {vid!r} (a non-empty string without '/')")


def write_features_h5(
    path: str | Path,
    items: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]],
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Write a whole feature file atomically: one float32 dataset per video at the root.

    Every array is validated as it would be on reading; ``attrs`` (e.g. fps, encoder) go to
    the root attributes.
    """
    import h5py

    path = Path(path)
    dim = None
    tokens: int | None | bool = False  # layout of the first array; the rest must match
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as fh:
            for key, value in (attrs or {}).items():
                fh.attrs[key] = value
            for vid, arr in _items(items):
                _check_vid(vid, path)
                arr = _check_array(np.asarray(arr), f"{path} (video {vid!r})", dim, tokens)
                dim, tokens = arr.shape[-1], (arr.shape[1] if arr.ndim == 3 else None)
                if vid in fh:
                    raise FeatureError(f"{path}: video {vid!r} given twice")
                fh.create_dataset(vid, data=arr)
    return path


class H5FeatureWriter:
    """Append videos to an HDF5 feature file one at a time; resumable after a kill.

    Each :meth:`add` writes the dataset, then sets ``complete=True`` on it, then flushes.
    Readers (and :meth:`has`) ignore entries without that mark, and :meth:`add` overwrites
    them, so a killed extraction resumes by skipping ``has(vid)`` videos::

        with H5FeatureWriter("feats.h5", attrs={"fps": 1.0, "encoder": "clip"}) as w:
            for vid in vids:
                if not w.has(vid):
                    w.add(vid, extract(vid))
    """

    def __init__(self, path: str | Path, attrs: Mapping[str, Any] | None = None) -> None:
        import h5py

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fh = h5py.File(self.path, "a")
        except OSError as exc:
            raise FeatureError(f"{self.path}: cannot open for appending ({exc})") from None
        fh = self._fh
        if len(fh.keys()) and not fh.attrs.get(WRITER_MARK, False):
            # A file from elsewhere: its entries have no completion marks; accept them as complete.
            for name, obj in fh.items():
                if isinstance(obj, h5py.Dataset):
                    obj.attrs["complete"] = True
        fh.attrs[WRITER_MARK] = True
        for key, value in (attrs or {}).items():
            if key in fh.attrs and _plain(fh.attrs[key]) != _plain(np.asarray(value)):
                raise FeatureError(
                    f"{self.path}: attribute {key!r} is {_plain(fh.attrs[key])!r} in the file, not {value!r}; "
                    "refusing to mix features of different settings"
                )
            fh.attrs[key] = value
        self._dim: int | None = None
        self._tokens: int | None | bool = False
        for name, obj in fh.items():
            if isinstance(obj, h5py.Dataset) and obj.attrs.get("complete", False) and obj.ndim in (2, 3):
                self._dim = int(obj.shape[-1])
                self._tokens = int(obj.shape[1]) if obj.ndim == 3 else None
                break
        fh.flush()

    def has(self, vid: str) -> bool:
        """True when ``vid`` was completely written."""
        obj = self._fh.get(vid)
        return obj is not None and bool(obj.attrs.get("complete", False))

    @property
    def attrs(self) -> Any:
        """The file's root attributes (h5py attribute manager: read and assign like a dict)."""
        return self._fh.attrs

    @property
    def video_ids(self) -> list[str]:
        """Videos completely written so far."""
        return sorted(name for name in self._fh if self.has(name))

    def entry_attrs(self, vid: str) -> dict[str, Any]:
        """Per-video attributes of a completely written video (e.g. ``duration``)."""
        if not self.has(vid):
            raise MissingFeaturesError(f"{self.path}: no complete entry for video {vid!r}", [vid])
        return {k: _plain(v) for k, v in self._fh[vid].attrs.items() if k != "complete"}

    def add(self, vid: str, array: np.ndarray, attrs: Mapping[str, Any] | None = None) -> None:
        """Write (or overwrite) one video's ``[T, D]`` (or ``[T, K, D]``) features, with optional per-video
        ``attrs`` (e.g. ``duration`` in seconds), and flush to disk."""
        _check_vid(vid, self.path)
        arr = _check_array(np.asarray(array), f"{self.path} (video {vid!r})", self._dim, self._tokens)
        if vid in self._fh:
            del self._fh[vid]
        ds = self._fh.create_dataset(vid, data=arr)
        for key, value in (attrs or {}).items():
            if key == "complete":
                raise FeatureError(f"{self.path}: 'complete' is reserved for the writer (video {vid!r})")
            ds.attrs[key] = value
        self._fh.flush()
        ds.attrs["complete"] = True
        self._fh.flush()
        self._dim = arr.shape[-1]
        self._tokens = arr.shape[1] if arr.ndim == 3 else None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "H5FeatureWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
