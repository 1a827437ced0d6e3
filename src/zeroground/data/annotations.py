"""Grounding annotations: one in-memory form, readers and writers for the benchmark formats.

Every benchmark ships its queries differently (Charades-STA as text lines in seconds,
ActivityNet Captions as a per-video JSON dict in seconds, PSVL as a list of normalised
spans). Everything downstream of this module sees one thing: a list of :class:`Moment`,
with times in **seconds**, in file order.

Bad input is never turned into silent garbage. A span with start > end, an empty sentence,
a non-positive duration, an unknown field or a non-number raises :class:`AnnotationError`
naming the file and the line (text) or item index (JSON).

Spans that leave ``[0, duration]`` are governed by ``out_of_range``:

* ``"error"`` (default): raise, unless the span only *ends* up to ``end_slack`` seconds
  (default 2 s) after the video's end. Charades-STA's published test split has 562 such
  spans (its end times run up to 1.5 s past the video length): they are kept exactly as the
  source gives them, because the published evaluation (and PSVL's reference code) scores
  against those raw times, and the count is logged as a warning.
* ``"clamp"``: clamp every out-of-range span into ``[0, duration]``; the count is logged.
* ``"keep"``: keep every span as given; the count is logged.

Pass ``end_slack=0`` for a strict reading.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

from zeroground.errors import ZerogroundError
from zeroground.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

OutOfRange = Literal["error", "clamp", "keep"]
OUT_OF_RANGE_CHOICES: tuple[str, ...] = ("error", "clamp", "keep")
FORMATS: tuple[str, ...] = ("charades_sta", "activitynet", "psvl", "qvhighlights")

#: Fields a PSVL-JSON item may carry. ``pos`` (part-of-speech tags of ``tokens``) is in
#: PSVL's released Charades-STA test file; anything else is rejected as a probable typo.
PSVL_FIELDS: frozenset[str] = frozenset({"vid", "duration", "timestamp", "sentence", "tokens", "pos"})
#: Fields an ActivityNet Captions video entry may carry (``annotations`` is never used).
ACTIVITYNET_FIELDS: frozenset[str] = frozenset({"duration", "timestamps", "sentences"})


class AnnotationError(ZerogroundError, ValueError):
    """An annotation file is malformed; the message names the file and the line/item."""


@dataclass
class Moment:
    """One grounding query: a sentence and the span of a video it describes.

    Times are in seconds. ``sentence`` is ``None`` for pseudo-labels that carry only
    ``tokens``; ``pos`` holds the part-of-speech tags that PSVL's test file gives per token.
    """

    video: str
    duration: float
    start: float
    end: float
    sentence: str | None = None
    tokens: list[str] | None = None
    pos: list[str] | None = field(default=None, repr=False)
    # Every ground-truth window [[s, e], ...] of a multi-window query (QVHighlights / lighthouse
    # JSON lines); ``start``/``end`` are the first. None for the single-window formats.
    windows: list[list[float]] | None = field(default=None, repr=False)
    qid: Any = field(default=None, repr=False)  # the query id of the source file, when it has one

    @property
    def span(self) -> tuple[float, float]:
        """``(start, end)`` in seconds."""
        return (self.start, self.end)

    @property
    def span_normalized(self) -> tuple[float, float]:
        """``(start, end) / duration``; not clamped, so it can exceed 1 where the source does."""
        return (self.start / self.duration, self.end / self.duration)


# --------------------------------------------------------------------------- validation


class _SpanChecker:
    """Applies the out-of-range policy to each moment of one file and counts what it did."""

    def __init__(self, path: Path, out_of_range: str, end_slack: float) -> None:
        if out_of_range not in OUT_OF_RANGE_CHOICES:
            raise AnnotationError(f"out_of_range must be one of {OUT_OF_RANGE_CHOICES}, got {out_of_range!r}")
        if not (end_slack >= 0):
            raise AnnotationError(f"end_slack must be >= 0 seconds, got {end_slack!r}")
        self.path = path
        self.policy = out_of_range
        self.end_slack = float(end_slack)
        self.n_outside = 0  # spans that left [0, duration]
        self.n_clamped = 0
        self.max_overshoot = 0.0
        self.first_items: list[str] = []

    def check(self, m: Moment, where: str) -> Moment:
        for name, value in (("duration", m.duration), ("start", m.start), ("end", m.end)):
            if not math.isfinite(value):
                raise AnnotationError(f"{self.path}: {where}: {name} is not a finite number ({value!r})")
        if m.duration <= 0:
            raise AnnotationError(f"{self.path}: {where}: duration must be > 0 seconds, got {m.duration}")
        if m.start > m.end:
            raise AnnotationError(
                f"{self.path}: {where}: start {m.start:g} > end {m.end:g} (video {m.video!r})"
            )
        if m.sentence is not None and not m.sentence.strip():
            raise AnnotationError(f"{self.path}: {where}: empty sentence (video {m.video!r})")
        if not m.video:
            raise AnnotationError(f"{self.path}: {where}: empty video id")
        if m.start >= 0 and m.end <= m.duration:
            return m
        self.n_outside += 1
        overshoot = max(-m.start, m.end - m.duration)
        self.max_overshoot = max(self.max_overshoot, overshoot)
        if len(self.first_items) < 5:
            self.first_items.append(where)
        within_slack = m.start >= 0 and m.start < m.duration and m.end - m.duration <= self.end_slack
        if self.policy == "error" and not within_slack:
            raise AnnotationError(
                f"{self.path}: {where}: span [{m.start:g}, {m.end:g}] s lies outside the video "
                f"[0, {m.duration:g}] s (video {m.video!r}); pass out_of_range='clamp' "
                f"(CLI: --out-of-range clamp) to clamp such spans, or 'keep' to keep them"
            )
        if self.policy == "clamp":
            m.start = min(max(m.start, 0.0), m.duration)
            m.end = min(max(m.end, 0.0), m.duration)
            self.n_clamped += 1
        return m

    def report(self) -> None:
        if self.n_outside == 0:
            return
        action = "clamped to [0, duration]" if self.policy == "clamp" else "kept as given"
        log.warning(
            "%s: %d span(s) leave [0, duration] (by up to %.3g s; first at %s): %s",
            self.path, self.n_outside, self.max_overshoot, ", ".join(self.first_items), action,
        )


def _number(value: Any, path: Path, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnnotationError(f"{path}: {where}: {name} must be a number, got {value!r}")
    return float(value)


def _str_list(value: Any, path: Path, where: str, name: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise AnnotationError(f"{path}: {where}: {name} must be a list of strings, got {value!r}")
    return list(value)


def _check_fields(entry: Any, path: Path, where: str, *, known: Iterable[str], required: Iterable[str]) -> None:
    """An item must be an object with only ``known`` keys and every ``required`` one."""
    if not isinstance(entry, dict):
        raise AnnotationError(f"{path}: {where}: must be an object, got {type(entry).__name__}")
    unknown = set(entry) - set(known)
    if unknown:
        raise AnnotationError(f"{path}: {where}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
    for key in required:
        if key not in entry:
            raise AnnotationError(f"{path}: {where}: missing field {key!r}")


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise AnnotationError(f"{path}: annotation file not found") from None
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}: not valid JSON ({exc})") from None


# --------------------------------------------------------------------------- durations


def read_charades_csv_durations(path: str | Path) -> dict[str, float]:
    """Video durations (seconds) from a Charades CSV (``Charades_v1_{train,test}.csv``: columns id, ..., length)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            if "id" not in fields or "length" not in fields:
                raise AnnotationError(
                    f"{path}: a Charades CSV needs columns 'id' and 'length', found {fields}"
                )
            out: dict[str, float] = {}
            for lineno, row in enumerate(reader, start=2):
                try:
                    out[row["id"]] = float(row["length"])
                except (TypeError, ValueError):
                    raise AnnotationError(
                        f"{path}: line {lineno}: length {row.get('length')!r} is not a number"
                    ) from None
            return out
    except FileNotFoundError:
        raise AnnotationError(f"{path}: durations CSV not found") from None


def resolve_durations(durations: Any, fps: float | None = None) -> Mapping[str, float]:
    """Turn what a user gives as durations into a ``{video: seconds}`` mapping.

    Accepts a mapping, a Charades CSV path, a feature store path (folder of ``.npy`` or an
    HDF5 file), or an open :class:`~zeroground.features.store.FeatureStore`; for features,
    duration = T / fps with fps from the store's attrs unless ``fps`` is given.
    """
    if durations is None:
        raise AnnotationError(
            "Charades-STA text annotations carry no video durations: give durations= a Charades "
            "CSV (columns id,...,length), a feature store (folder of <vid>.npy or .h5 with an fps "
            "attribute), or a {video: seconds} mapping"
        )
    if isinstance(durations, Mapping):
        return durations
    from zeroground.features.store import FeatureStore

    if isinstance(durations, FeatureStore):
        return durations.durations(fps=fps)
    path = Path(durations)
    if path.suffix.lower() == ".csv":
        return read_charades_csv_durations(path)
    if path.is_dir() or path.suffix.lower() in (".h5", ".hdf5"):
        return FeatureStore.open(path).durations(fps=fps)
    raise AnnotationError(
        f"{path}: cannot read durations from this path (expected a .csv, a folder of .npy or a .h5 file)"
    )


# --------------------------------------------------------------------------- Charades-STA


def read_charades_sta(
    path: str | Path,
    durations: Mapping[str, float] | str | Path | Any = None,
    *,
    out_of_range: OutOfRange = "error",
    end_slack: float = 2.0,
    fps: float | None = None,
) -> list[Moment]:
    """Read a Charades-STA text file: one ``VID start end##sentence`` per line, times in seconds.

    The format has no durations, so ``durations`` is required (see :func:`resolve_durations`).
    """
    path = Path(path)
    if durations is None:
        raise AnnotationError(
            f"{path}: Charades-STA text annotations carry no video durations: pass durations= "
            "(CLI: --durations) a Charades CSV (columns id,...,length), a feature store path "
            "(duration = T / fps) or a {video: seconds} mapping"
        )
    table = resolve_durations(durations, fps=fps)
    checker = _SpanChecker(path, out_of_range, end_slack)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AnnotationError(f"{path}: annotation file not found") from None
    moments: list[Moment] = []
    missing: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {lineno}"
        head, sep, sentence = line.partition("##")
        if not sep:
            raise AnnotationError(f"{path}: {where}: expected 'VID start end##sentence', got {line!r}")
        parts = head.split()
        if len(parts) != 3:
            raise AnnotationError(f"{path}: {where}: expected 'VID start end' before '##', got {head!r}")
        vid = parts[0]
        try:
            start, end = float(parts[1]), float(parts[2])
        except ValueError:
            raise AnnotationError(f"{path}: {where}: start/end are not numbers: {parts[1:]!r}") from None
        if vid not in table:
            missing.append(vid)
            continue
        m = Moment(vid, float(table[vid]), start, end, sentence.strip())
        moments.append(checker.check(m, where))
    if missing:
        uniq = sorted(set(missing))
        raise AnnotationError(
            f"{path}: no duration for {len(uniq)} video(s): {', '.join(uniq[:20])}"
            + (" ..." if len(uniq) > 20 else "")
        )
    checker.report()
    return moments


def write_charades_sta(moments: Sequence[Moment], path: str | Path) -> None:
    """Write ``VID start end##sentence`` lines (seconds, 2 decimals as in the original release: lossy)."""
    lines = []
    for i, m in enumerate(moments):
        if not m.sentence:
            raise AnnotationError(f"{path}: item {i}: Charades-STA lines need a sentence (video {m.video!r})")
        lines.append(f"{m.video} {m.start:.2f} {m.end:.2f}##{m.sentence}")
    atomic_write_text(path, "\n".join(lines) + "\n")


# --------------------------------------------------------------------------- ActivityNet


def read_activitynet(
    path: str | Path, *, out_of_range: OutOfRange = "error", end_slack: float = 2.0
) -> list[Moment]:
    """Read ActivityNet Captions JSON (``{vid: {duration, timestamps, sentences}}``, seconds), e.g. val_1/val_2."""
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: ActivityNet Captions JSON must be an object {{video: entry}}, got {type(data).__name__}")
    checker = _SpanChecker(path, out_of_range, end_slack)
    moments: list[Moment] = []
    for vid, entry in data.items():
        where = f"video {vid!r}"
        _check_fields(entry, path, where, known=ACTIVITYNET_FIELDS, required=ACTIVITYNET_FIELDS)
        duration = _number(entry["duration"], path, where, "duration")
        stamps, sentences = entry["timestamps"], entry["sentences"]
        if not isinstance(stamps, list) or not isinstance(sentences, list) or len(stamps) != len(sentences):
            raise AnnotationError(
                f"{path}: {where}: 'timestamps' and 'sentences' must be lists of equal length"
            )
        for j, (stamp, sentence) in enumerate(zip(stamps, sentences)):
            w = f"{where} item {j}"
            if not isinstance(stamp, list) or len(stamp) != 2:
                raise AnnotationError(f"{path}: {w}: timestamp must be [start, end], got {stamp!r}")
            if not isinstance(sentence, str):
                raise AnnotationError(f"{path}: {w}: sentence must be a string, got {sentence!r}")
            start = _number(stamp[0], path, w, "start")
            end = _number(stamp[1], path, w, "end")
            moments.append(checker.check(Moment(vid, duration, start, end, sentence.strip()), w))
    checker.report()
    return moments


def write_activitynet(moments: Sequence[Moment], path: str | Path) -> None:
    """Write ActivityNet Captions JSON; moments of one video are grouped in first-seen order."""
    out: dict[str, dict[str, Any]] = {}
    for i, m in enumerate(moments):
        if m.sentence is None:
            raise AnnotationError(f"{path}: item {i}: ActivityNet Captions needs a sentence (video {m.video!r})")
        entry = out.setdefault(m.video, {"duration": m.duration, "timestamps": [], "sentences": []})
        if entry["duration"] != m.duration:
            raise AnnotationError(
                f"{path}: item {i}: video {m.video!r} has two durations ({entry['duration']} and {m.duration})"
            )
        entry["timestamps"].append([m.start, m.end])
        entry["sentences"].append(m.sentence)
    atomic_write_json(path, out, indent=None)


# --------------------------------------------------------------------------- PSVL JSON


def read_psvl_json(
    path: str | Path, *, out_of_range: OutOfRange = "error", end_slack: float = 2.0
) -> list[Moment]:
    """Read PSVL JSON: a list of ``{vid, duration, timestamp: [s, e] normalised, sentence?, tokens?, pos?}``.

    Reads both PSVL's pseudo-label files (no sentence) and its test files (sentence, tokens,
    pos). Unknown fields are rejected (see :data:`PSVL_FIELDS`).
    """
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, list):
        raise AnnotationError(f"{path}: PSVL JSON must be a list of items, got {type(data).__name__}")
    checker = _SpanChecker(path, out_of_range, end_slack)
    moments: list[Moment] = []
    for i, item in enumerate(data):
        where = f"item {i}"
        _check_fields(item, path, where, known=PSVL_FIELDS, required=("vid", "duration", "timestamp"))
        vid = item["vid"]
        if not isinstance(vid, str):
            raise AnnotationError(f"{path}: {where}: vid must be a string, got {vid!r}")
        duration = _number(item["duration"], path, where, "duration")
        stamp = item["timestamp"]
        if not isinstance(stamp, list) or len(stamp) != 2:
            raise AnnotationError(f"{path}: {where}: timestamp must be [start, end] (normalised), got {stamp!r}")
        s = _number(stamp[0], path, where, "timestamp start")
        e = _number(stamp[1], path, where, "timestamp end")
        sentence = item.get("sentence")
        if sentence is not None and not isinstance(sentence, str):
            raise AnnotationError(f"{path}: {where}: sentence must be a string, got {sentence!r}")
        tokens = _str_list(item.get("tokens"), path, where, "tokens")
        pos = _str_list(item.get("pos"), path, where, "pos")
        m = Moment(vid, duration, s * duration, e * duration, sentence, tokens, pos)
        moments.append(checker.check(m, where))
    checker.report()
    return moments


def write_psvl_json(moments: Sequence[Moment], path: str | Path) -> None:
    """Write PSVL JSON atomically (timestamps normalised; optional fields only when set)."""
    items = []
    for m in moments:
        item: dict[str, Any] = {
            "vid": m.video,
            "duration": m.duration,
            "timestamp": list(m.span_normalized),
        }
        if m.sentence is not None:
            item["sentence"] = m.sentence
        if m.tokens is not None:
            item["tokens"] = list(m.tokens)
        if m.pos is not None:
            item["pos"] = list(m.pos)
        items.append(item)
    atomic_write_json(path, items, indent=None)


# --------------------------------------------------------------------------- dispatch


def detect_format(path: str | Path) -> str:
    """Guess an annotation format: ``.txt`` is Charades-STA; JSON holding a list is PSVL, an object ActivityNet."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".txt", ".sta"):
        return "charades_sta"
    if suffix == ".jsonl":
        return "qvhighlights"
    if suffix == ".json":
        try:
            with open(path, encoding="utf-8") as fh:
                head = fh.read(4096).lstrip()
        except FileNotFoundError:
            raise AnnotationError(f"{path}: annotation file not found") from None
        if head.startswith("["):
            return "psvl"
        if head.startswith("{"):
            return "activitynet"
        raise AnnotationError(f"{path}: JSON neither a list (PSVL) nor an object (ActivityNet Captions)")
    raise AnnotationError(
        f"{path}: cannot tell the annotation format from the extension {suffix!r}; "
        f"pass format= (CLI: --format) one of {FORMATS}"
    )


def read_annotations(
    path: str | Path,
    format: str = "auto",
    durations: Mapping[str, float] | str | Path | Any = None,
    *,
    out_of_range: OutOfRange = "error",
    end_slack: float = 2.0,
) -> list[Moment]:
    """Read any supported annotation file into a list of :class:`Moment` (seconds, file order).

    ``format`` is ``"auto"`` (see :func:`detect_format`), ``"charades_sta"``, ``"activitynet"``
    or ``"psvl"``; ``durations`` is needed only for Charades-STA text files.
    """
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "charades_sta":
        return read_charades_sta(path, durations, out_of_range=out_of_range, end_slack=end_slack)
    if fmt == "activitynet":
        return read_activitynet(path, out_of_range=out_of_range, end_slack=end_slack)
    if fmt == "psvl":
        return read_psvl_json(path, out_of_range=out_of_range, end_slack=end_slack)
    if fmt == "qvhighlights":
        return read_qvhighlights(path, out_of_range=out_of_range, end_slack=end_slack)
    raise AnnotationError(f"{path}: unknown annotation format {format!r}; choose auto or one of {FORMATS}")


QVH_FIELDS = ("qid", "query", "duration", "vid", "relevant_windows")


def read_qvhighlights(path: str | Path, *, out_of_range: OutOfRange = "error", end_slack: float = 2.0) -> list[Moment]:
    """QVHighlights / lighthouse JSON lines: one ``{qid, query, duration, vid, relevant_windows}`` a line.

    ``relevant_windows`` holds one or more ``[s, e]`` in seconds; all are kept in
    :attr:`Moment.windows` (``start``/``end`` = the first). Other fields (saliency) are ignored.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AnnotationError(f"{path}: annotation file not found") from None
    checker = _SpanChecker(path, out_of_range, end_slack)
    moments: list[Moment] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {lineno}"
        try:
            d = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AnnotationError(f"{path}: {where}: not valid JSON ({exc})") from None
        if not isinstance(d, dict):
            raise AnnotationError(f"{path}: {where}: expected a JSON object")
        missing = [k for k in QVH_FIELDS if k not in d]
        if missing:
            raise AnnotationError(f"{path}: {where}: missing field(s) {missing} (QVHighlights layout: {list(QVH_FIELDS)})")
        wins = d["relevant_windows"]
        if (not isinstance(wins, list) or not wins or not all(
                isinstance(w, (list, tuple)) and len(w) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in w)
                for w in wins)):
            raise AnnotationError(f"{path}: {where}: relevant_windows must be a non-empty list of [start, end], got {wins!r}")
        dur = d["duration"]
        if isinstance(dur, bool) or not isinstance(dur, (int, float)):
            raise AnnotationError(f"{path}: {where}: duration must be a number of seconds, got {dur!r}")
        query = d["query"]
        if not isinstance(query, str):
            raise AnnotationError(f"{path}: {where}: query must be a string, got {query!r}")
        checked = [checker.check(Moment(str(d["vid"]), float(dur), float(a), float(b), query.strip()), f"{where} (qid {d['qid']})")
                   for a, b in wins]
        first = checked[0]
        first.windows = [[w.start, w.end] for w in checked]
        first.qid = d["qid"]
        moments.append(first)
    checker.report()
    if not moments:
        raise AnnotationError(f"{path}: no queries")
    return moments


def write_annotations(moments: Sequence[Moment], path: str | Path, format: str = "auto") -> None:
    """Write moments in ``format`` (auto: ``.txt`` → Charades-STA, ``.json`` → PSVL)."""
    path = Path(path)
    fmt = format
    if fmt == "auto":
        fmt = "charades_sta" if path.suffix.lower() == ".txt" else "psvl"
    writers = {"charades_sta": write_charades_sta, "activitynet": write_activitynet, "psvl": write_psvl_json}
    if fmt not in writers:
        raise AnnotationError(f"{path}: unknown annotation format {format!r}; choose auto or one of {FORMATS}")
    writers[fmt](moments, path)
