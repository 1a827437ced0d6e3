"""The training-free CLIP baseline: the bar every trained method must clear.

Rule (documented, simple, no learned parameter):

1. ``sim[t] = <frame_t, query>`` — cosine similarity of each L2-normalised
   frame feature with the query's CLIP text embedding.
2. Candidate windows at several scales: lengths ``round(f * T)`` for ``f`` in
   :data:`WINDOW_FRACTIONS` (at least one frame), sliding with a stride of a
   quarter of the length.
3. Score of window ``[s, e)`` = mean of ``sim`` inside minus mean of ``sim``
   outside (the whole video has score 0): a good moment is one that matches
   the query *better than the rest of the video*, which keeps long windows
   from winning just by averaging.
4. Greedy temporal NMS (tIoU > 0.5 suppressed), keep the top ``k``.
5. Window ``[s, e)`` of ``T`` features maps to seconds
   ``[s / T * duration, e / T * duration]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from zeroground.errors import ZerogroundError


class TrainingFreeError(ZerogroundError, ValueError):
    """Features, queries or an encoder that the training-free scorer cannot use together."""

WINDOW_FRACTIONS: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9)
NMS_THRESHOLD = 0.5


@dataclass(frozen=True)
class ScoredSpans:
    spans: np.ndarray  # [K, 2] seconds, best first
    scores: np.ndarray  # [K]


def candidate_windows(num_frames: int, fractions: Sequence[float] = WINDOW_FRACTIONS) -> np.ndarray:
    """Multi-scale sliding windows as feature-index pairs ``[s, e)`` -> [W, 2] int64."""
    if num_frames < 1:
        raise TrainingFreeError(f"need at least one feature frame, got {num_frames}")
    lengths = sorted({min(num_frames, max(1, int(round(f * num_frames)))) for f in fractions} | {num_frames})
    windows = []
    for length in lengths:
        stride = max(1, length // 4)
        starts = np.arange(0, num_frames - length + 1, stride)
        if starts[-1] != num_frames - length:  # always cover the end of the video
            starts = np.append(starts, num_frames - length)
        windows.append(np.stack([starts, starts + length], axis=1))
    return np.unique(np.concatenate(windows, axis=0), axis=0).astype(np.int64)  # [W, 2]


def inside_minus_outside(sim: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Mean similarity inside each window minus the mean outside -> [W]."""
    sim = np.asarray(sim, dtype=np.float64)
    total, n = sim.sum(), len(sim)
    csum = np.concatenate([[0.0], np.cumsum(sim)])  # [T + 1]
    s, e = windows[:, 0], windows[:, 1]
    inside_sum = csum[e] - csum[s]
    inside_len = (e - s).astype(np.float64)
    outside_len = n - inside_len
    inside = inside_sum / inside_len
    outside = np.divide(total - inside_sum, outside_len, out=inside.copy(), where=outside_len > 0)
    return inside - outside


def score_windows(
    frame_feats: np.ndarray,
    query_feat: np.ndarray,
    duration: float,
    *,
    top_k: int = 5,
    nms_threshold: float = NMS_THRESHOLD,
    fractions: Sequence[float] = WINDOW_FRACTIONS,
) -> ScoredSpans:
    """Top-``k`` spans (seconds) of one video for one query, by the rule in the module doc."""
    from zeroground.eval.metrics import temporal_nms

    frame_feats = np.asarray(frame_feats, dtype=np.float32)  # [T, D]
    query_feat = np.asarray(query_feat, dtype=np.float32).reshape(-1)  # [D]
    if frame_feats.ndim != 2 or frame_feats.shape[1] != query_feat.shape[0]:
        raise TrainingFreeError(
            f"frame features {tuple(frame_feats.shape)} and query embedding ({query_feat.shape[0]},) "
            "are not in the same space: use the encoder the features were extracted with"
        )
    sim = frame_feats @ query_feat  # [T]
    windows = candidate_windows(len(sim), fractions)  # [W, 2]
    scores = inside_minus_outside(sim, windows)  # [W]
    spans = windows.astype(np.float64) / len(sim) * float(duration)  # [W, 2] seconds
    keep = temporal_nms(spans, scores, threshold=nms_threshold, top_k=top_k)
    return ScoredSpans(spans=spans[keep], scores=scores[keep])


def clip_training_free(store, moments, encoder, *, top_k: int = 5, nms_threshold: float = NMS_THRESHOLD) -> list:
    """Training-free predictions for every moment -> list of ``PredictionRecord``.

    ``store`` is a :class:`~zeroground.features.store.FeatureStore` of CLIP
    frame features, ``moments`` the queries (``Moment`` with ``sentence``),
    ``encoder`` a :class:`~zeroground.features.clip.ClipEncoder` or the
    name/path of the CLIP model the features were extracted with.
    """
    from zeroground.eval.predictions import PredictionRecord
    from zeroground.features.clip import load_clip

    moments = list(moments)
    if not moments:
        return []
    missing_text = [i for i, m in enumerate(moments) if not (m.sentence and m.sentence.strip())]
    if missing_text:
        raise TrainingFreeError(
            f"the training-free baseline needs sentences; {len(missing_text)} moment(s) have none "
            f"(first: video {moments[missing_text[0]].video!r})"
        )
    clip = load_clip(encoder) if isinstance(encoder, (str,)) or hasattr(encoder, "__fspath__") else encoder
    store.require(m.video for m in moments)
    if store.dim != clip.dim:
        raise TrainingFreeError(
            f"features in {store.path} are {store.dim}-d but encoder {clip.name!r} embeds text in {clip.dim}-d: "
            "use the encoder the features were extracted with"
        )
    sentences = list(dict.fromkeys(m.sentence for m in moments))
    text = dict(zip(sentences, clip.encode_texts(sentences)))  # sentence -> [D]
    records = []
    cache: dict[str, np.ndarray] = {}
    for m in moments:
        if m.video not in cache:
            cache = {m.video: store[m.video]}  # moments are usually grouped by video
        res = score_windows(cache[m.video], text[m.sentence], m.duration, top_k=top_k, nms_threshold=nms_threshold)
        records.append(
            PredictionRecord(
                video=m.video,
                query=m.sentence,
                duration=float(m.duration),
                gt=[float(m.start), float(m.end)],
                pred=[[float(a), float(b)] for a, b in res.spans],
                scores=[float(s) for s in res.scores],
            )
        )
    return records


# ---------------------------------------------------------------------------------------------
# The registry of training-free rules: one video's features + one text vector -> ranked spans.
# "windows" is zeroground's own rule above; "tfvtg" and "tag" reproduce the published rules
# (zeroground.ground.tfvtg, zeroground.ground.tag). Each returns its own candidate count,
# top-1 first: windows 5, TFVTG up to 10, TAG cand_num (12 Charades, 17 ActivityNet).

SETTINGS: tuple[str, ...] = ("charades", "activitynet")


def predict_windows(video: np.ndarray, text: np.ndarray, duration: float, setting: str = "charades") -> ScoredSpans:
    """The windows rule; token features ``[N, K, D]`` use each frame's best token."""
    from zeroground.ground.tf_common import frame_similarity

    if np.ndim(video) == 3:
        sim, _ = frame_similarity(video, text)  # [N]
        windows = candidate_windows(len(sim))
        scores = inside_minus_outside(sim, windows)
        spans = windows.astype(np.float64) / len(sim) * float(duration)
        from zeroground.eval.metrics import temporal_nms

        keep = temporal_nms(spans, scores, threshold=NMS_THRESHOLD, top_k=5)
        return ScoredSpans(spans=spans[keep], scores=scores[keep])
    return score_windows(video, text, duration, top_k=5)


def predict_tfvtg(video: np.ndarray, text: np.ndarray, duration: float, setting: str = "charades") -> ScoredSpans:
    from zeroground.ground.tfvtg import tfvtg

    res = tfvtg(video, text, duration, setting)
    return ScoredSpans(spans=res.spans, scores=res.confidence)


def predict_tag(video: np.ndarray, text: np.ndarray, duration: float, setting: str = "charades") -> ScoredSpans:
    from zeroground.ground.tag import tag

    res = tag(video, text, duration, setting)
    return ScoredSpans(spans=res.spans, scores=res.votes)


TRAINING_FREE_METHODS = {"windows": predict_windows, "tfvtg": predict_tfvtg, "tag": predict_tag}


def get_method(name: str):
    from zeroground.ground.tf_common import TrainingFreeError

    if name not in TRAINING_FREE_METHODS:
        raise TrainingFreeError(f"unknown training-free method {name!r}; known: {', '.join(TRAINING_FREE_METHODS)}")
    return TRAINING_FREE_METHODS[name]


def predict_training_free(
    store, moments, method: str = "tag", setting: str = "charades", *,
    query_vectors: np.ndarray | None = None, encoder=None, progress: bool = False,
) -> list:
    """Predictions of a training-free rule for every moment -> list of ``PredictionRecord``.

    Text vectors come from ``query_vectors`` ([Q, D], row i = moment i, in the width of
    the features: e.g. BLIP-2 text_proj outputs for Q-Former token features) or from a CLIP
    ``encoder`` (a loaded one, or its name/path) that made the frame features.
    """
    from zeroground.eval.predictions import PredictionRecord
    from zeroground.ground.tf_common import TrainingFreeError

    predict = get_method(method)
    if setting not in SETTINGS:
        raise TrainingFreeError(f"unknown setting {setting!r}; known: {', '.join(SETTINGS)}")
    moments = list(moments)
    if not moments:
        return []
    store.require(m.video for m in moments)
    if query_vectors is not None:
        qv = np.asarray(query_vectors, dtype=np.float32)
        if qv.ndim != 2 or qv.shape[0] != len(moments):
            raise TrainingFreeError(
                f"query vectors must be [Q, D] with one row per query ({len(moments)}), got shape {tuple(qv.shape)}"
            )
        text = list(qv)
    else:
        if encoder is None:
            raise TrainingFreeError("no text vectors: give query vectors (.npy) or the encoder the features were made with")
        missing = [m for m in moments if not (m.sentence and m.sentence.strip())]
        if missing:
            raise TrainingFreeError(f"{len(missing)} quer(ies) have no sentence (first: video {missing[0].video!r})")
        from zeroground.features.clip import load_clip

        clip = load_clip(encoder) if isinstance(encoder, str) or hasattr(encoder, "__fspath__") else encoder
        sentences = list(dict.fromkeys(m.sentence for m in moments))
        by_sentence = dict(zip(sentences, clip.encode_texts(sentences)))
        text = [by_sentence[m.sentence] for m in moments]
    if text[0].shape[0] != store.dim:
        raise TrainingFreeError(
            f"features in {store.path} are {store.dim}-d but the text vectors are {text[0].shape[0]}-d: "
            "use the text encoder of the model that made the features"
        )
    records = []
    cache: dict[str, np.ndarray] = {}
    items = zip(moments, text)
    if progress:
        from tqdm import tqdm

        items = tqdm(items, total=len(moments), desc=f"{method} ({setting})", unit="query")
    for m, t in items:
        if m.video not in cache:
            cache = {m.video: store[m.video]}  # moments are usually grouped by video
        res = predict(cache[m.video], t, m.duration, setting)
        records.append(PredictionRecord(
            video=m.video, query=m.sentence, duration=float(m.duration), gt=[float(m.start), float(m.end)],
            pred=[[float(a), float(b)] for a, b in res.spans], scores=[float(s) for s in res.scores],
        ))
    return records


def training_free_rows(store, moments, encoder, methods: Sequence[str] = ("tfvtg", "tag"),
                       setting: str = "charades") -> dict[str, list]:
    """Records of each training-free rule on the same queries, e.g. the demo table's ``tfvtg``/``tag``
    rows: ``records.update(training_free_rows(store, test_moments, clip))`` (``clip`` = the loaded
    encoder of the demo's features). Each record's ``pred`` is top-1 first."""
    return {m: predict_training_free(store, moments, m, setting, encoder=encoder) for m in methods}
