"""``pseudo_label``: unlabeled videos (a feature store) -> pseudo training pairs on disk.

One entry point for both published recipes, picked from :data:`PSEUDO_LABELERS`:

* ``psvl``  -- pseudo-events + bags of nouns/verbs, written as PSVL-JSON ``tokens``;
* ``lfvmr`` -- the seed LFVMR's: pseudo-events only, written as PSVL-JSON spans (no tokens,
  no vectors): its trainer draws the candidate query frames inside each span at every epoch;
* ``lfvmr_psvlnet`` -- zeroground's variant: pseudo-events + one CLIP-space vector each (the
  medoid frame), PSVL-JSON spans plus ``<out>.npy`` ``[N, D]`` float32, row ``i`` = item ``i``.

Both share the proposals (:func:`zeroground.pseudo.proposals.propose_events`) and
write the resolved config as ``<out>.config.yaml`` beside the JSON, so a pseudo-label
file can always be regenerated. Per-video randomness is seeded from ``(seed, video id)``,
so a video's labels do not depend on which other videos are in the store.
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from zeroground.errors import ZerogroundError
from zeroground.pseudo.lfvmr import LFVMRConfig, select_query_vector
from zeroground.pseudo.proposals import ProposalConfig, propose_events_with
from zeroground.pseudo.psvl import (
    PSVLConfig,
    VERB_SOURCES,
    VerbStats,
    action_evidence,
    choose_clip_verbs,
    clip_verb_scores,
    clip_tag_frames,
    corpus_nouns,
    event_noun_scores,
    sample_nouns,
    load_verb_stats,
    pick_verbs,
    read_detections,
)

log = logging.getLogger(__name__)


class PseudoLabelError(ZerogroundError, ValueError):
    """Pseudo-labelling cannot run with the inputs given; the message says what is missing."""


@dataclass
class PseudoLabelConfig:
    """Everything that decides a pseudo-label file (saved as ``<out>.config.yaml``)."""

    method: str = "psvl"
    features: str = ""                  # feature store used for proposals (and for LFVMR queries by default)
    out: str = ""
    seed: int = 0
    fps: float | None = None            # feature frames per second, if the store does not record it
    detections: str | None = None       # PSVL nouns from a detections JSON ...
    clip: str | None = None             # ... or from CLIP tagging with this model (folder or hub id)
    corpus: str | None = None           # PSVL verbs: text file (one sentence per line) or saved stats .json
    query_features: str | None = None   # LFVMR: CLIP feature store for query vectors when `features` is not CLIP
    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    psvl: PSVLConfig = field(default_factory=PSVLConfig)
    lfvmr: LFVMRConfig = field(default_factory=LFVMRConfig)


def _video_rng(seed: int, vid: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(vid.encode("utf-8"))])


def _open_store(store: Any) -> Any:
    """A FeatureStore from a path, or the object itself (anything with ``video_ids`` and ``[]``)."""
    if isinstance(store, (str, Path)):
        from zeroground.features.store import FeatureStore

        return FeatureStore.open(store)
    return store


def _video_ids(store: Any) -> list[str]:
    ids = getattr(store, "video_ids", None)
    return list(ids) if ids is not None else list(store.keys())


def _durations(store: Any, vids: list[str], cfg: PseudoLabelConfig,
               durations: Mapping[str, float] | None) -> dict[str, float]:
    if durations is not None:
        missing = [v for v in vids if v not in durations]
        if missing:
            raise PseudoLabelError(f"durations missing for {len(missing)} video(s): {missing[:10]}")
        return {v: float(durations[v]) for v in vids}
    fps = cfg.fps
    if fps is None:
        fps = getattr(store, "fps", None)
        if fps is None and isinstance(getattr(store, "attrs", None), dict):
            fps = store.attrs.get("fps")
    if fps is None or not fps > 0:
        raise PseudoLabelError(
            "cannot tell video durations: the feature store records no 'fps' attribute; "
            "give --fps (feature frames per second) or a durations mapping")
    shape = getattr(store, "shape", None)
    return {v: (shape(v)[0] if shape else len(store[v])) / float(fps) for v in vids}


def _moment(vid: str, duration: float, span: tuple[int, int], num_frames: int,
            tokens: list[str] | None = None):
    from zeroground.data.annotations import Moment

    s, e = span
    return Moment(video=vid, duration=duration, start=s / num_frames * duration,
                  end=e / num_frames * duration, tokens=tokens)


# --------------------------------------------------------------------------- labelers


LabelerResult = tuple[list[Any], np.ndarray | None]


def label_psvl(store: Any, vids: list[str], durations: dict[str, float], cfg: PseudoLabelConfig,
               *, clip_model: Any = None, verb_stats: VerbStats | None = None,
               detections: Mapping[str, Any] | None = None, progress: bool = False,
               engine: str = "local", ray_address: str | None = None, **_: Any) -> LabelerResult:
    """PSVL: per pseudo-event, ``queries_per_event`` token lists of verbs + nouns."""
    pc = cfg.psvl
    if detections is None and cfg.detections:
        detections = read_detections(cfg.detections)
    if pc.verb_source not in VERB_SOURCES:
        raise PseudoLabelError(f"unknown psvl.verb_source {pc.verb_source!r}; choose one of {list(VERB_SOURCES)}")
    clip_verbs = pc.verb_source == "clip"
    if (detections is None or clip_verbs) and clip_model is None and cfg.clip:
        from zeroground.features.clip import load_clip

        clip_model = load_clip(cfg.clip)
    if clip_verbs and clip_model is None:
        raise PseudoLabelError("psvl.verb_source 'clip' ranks verbs with CLIP: give --clip MODEL "
                               "(the model whose image features are in the store)")
    if detections is None and clip_model is None:
        raise PseudoLabelError("PSVL nouns need object labels: give --detections FILE.json "
                               "or --clip MODEL (zero-shot tagging of CLIP frame features)")
    if verb_stats is None:
        if not cfg.corpus:
            raise PseudoLabelError("PSVL verbs need a text corpus: give --corpus FILE.txt "
                                   "(one sentence per line) or saved verb statistics (.json)")
        verb_stats = load_verb_stats(cfg.corpus, exclude_verbs=pc.exclude_verbs, progress=progress)
    noun_emb, vocab = None, []
    if detections is None:
        vocab = list(pc.nouns) if pc.nouns else corpus_nouns(
            verb_stats, max_nouns=pc.vocab_size, min_count=pc.vocab_min_count)
        if not vocab:
            raise PseudoLabelError("CLIP tagging has no noun vocabulary: the corpus yielded no noun-verb "
                                   "pairs; give psvl.nouns in the config")
        prompts = [pc.tag_prompt.format(n) if "{}" in pc.tag_prompt else n for n in vocab]
        noun_emb = np.asarray(clip_model.encode_texts(prompts))  # [V, D]
    else:
        missing = [v for v in vids if v not in detections]
        if missing:
            raise PseudoLabelError(f"detections file has no entry for {len(missing)} video(s): {missing[:10]}")
    if pc.noun_sampling not in ("top", "sample"):
        raise PseudoLabelError(f"unknown psvl.noun_sampling {pc.noun_sampling!r}; choose 'top' or 'sample'")
    if pc.keep_events < 0:
        raise PseudoLabelError(f"psvl.keep_events must be >= 0 (0 keeps every proposal), found {pc.keep_events}")
    if pc.truncation_ratio < 0 or pc.aftermath_s <= 0:
        raise PseudoLabelError(f"psvl.truncation_ratio must be >= 0 (0: off) and psvl.aftermath_s > 0; "
                               f"found {pc.truncation_ratio} and {pc.aftermath_s}")
    if pc.truncation_ratio > 0 and pc.keep_events <= 0:
        raise PseudoLabelError("psvl.truncation_ratio skips proposals before the keep_events selection: "
                               "it needs psvl.keep_events > 0")
    if pc.keep_events > 0 and not clip_verbs:
        raise PseudoLabelError("psvl.keep_events ranks pseudo-events by CLIP action evidence: it needs "
                               "psvl.verb_source 'clip' (or keep_events: 0)")
    neutral = np.asarray(clip_model.encode_texts([pc.neutral_prompt]))[0] if pc.keep_events > 0 else None
    shared = {"cfg": cfg, "durations": durations, "noun_emb": noun_emb, "vocab": vocab, "verb_stats": verb_stats,
              "neutral": neutral, "detections": detections}
    if engine == "ray":
        per_video = _on_ray(_psvl_chunk, store, vids, shared, clip_model if clip_verbs else None, ray_address)
    else:
        encode_phrases = _phrase_encoder(clip_model)
        per_video = [_psvl_video(vid, store[vid], shared, encode_phrases)
                     for vid in _progress(vids, progress, "psvl pseudo-labels")]
    moments = []
    for vid, t, events in per_video:
        if pc.keep_events > 0:
            events = [events[i] for i in select_events([ev[0] for ev in events], pc.keep_events)]
        for _, span, queries, _ in events:
            for tokens in queries:
                moments.append(_moment(vid, durations[vid], span, t, tokens))
    return moments, None


def _phrase_encoder(clip_model: Any) -> Callable[[list[str]], np.ndarray]:
    """CLIP text embeddings of verb phrases, each phrase encoded once (memoised)."""
    phrase_cache: dict[str, np.ndarray] = {}

    def encode_phrases(phrases: list[str]) -> np.ndarray:
        missing = sorted({p for p in phrases if p not in phrase_cache})
        if missing:
            phrase_cache.update(zip(missing, np.asarray(clip_model.encode_texts(missing))))
        return np.stack([phrase_cache[p] for p in phrases])

    return encode_phrases


def _psvl_video(vid: str, feats: np.ndarray, shared: dict[str, Any],
                encode_phrases: Callable[[list[str]], np.ndarray]) -> tuple[str, int, list]:
    """The per-video work of PSVL (proposals, tagging, verbs): ``(vid, T, events)``,
    events ``[action evidence, span, token lists, best verb]``. A pure function of the
    video's features and ``shared``, seeded by (seed, vid): the unit of a Ray task."""
    cfg, durations = shared["cfg"], shared["durations"]
    noun_emb, vocab, verb_stats = shared["noun_emb"], shared["vocab"], shared["verb_stats"]
    neutral, detections = shared["neutral"], shared["detections"]
    pc = cfg.psvl
    clip_verbs = pc.verb_source == "clip"
    t = feats.shape[0]
    rng = _video_rng(cfg.seed, vid)
    spans = propose_events_with(feats, dataclasses.replace(cfg.proposals, seed=int(rng.integers(2**31))))
    if detections is not None:
        frame_labels = detections[vid]
    else:
        if feats.shape[1] != noun_emb.shape[1]:
            raise PseudoLabelError(
                f"video {vid!r}: features have D={feats.shape[1]} but the CLIP model embeds in "
                f"D={noun_emb.shape[1]}; CLIP tagging needs CLIP image features of the same model")
        frame_labels = clip_tag_frames(feats, noun_emb, vocab, top_k=pc.tag_top_k,
                                       temperature=pc.tag_temperature)
    events = []  # [action evidence, span, token lists, best verb]
    for s, e in spans:
        scored = event_noun_scores(frame_labels, (s / t, e / t), min_score=pc.min_score)
        nouns = [label for label, _ in scored[:pc.num_nouns]]
        frames = feats[int(s):max(int(e), int(s) + 1)]
        evidence, cos = 0.0, None
        if clip_verbs:
            cos = clip_verb_scores(verb_stats, nouns, frames, encode_phrases, prompt=pc.verb_prompt)
            if pc.keep_events > 0:
                evidence = action_evidence(cos, frames, neutral)
            if pc.truncation_ratio > 0 and int(e) < t:
                n_after = max(1, int(round(pc.aftermath_s * t / durations[vid])))
                after = feats[int(e):int(e) + n_after]
                after_cos = clip_verb_scores(verb_stats, nouns, after, encode_phrases, prompt=pc.verb_prompt)
                if action_evidence(after_cos, after, neutral) > pc.truncation_ratio * max(evidence, 0.0):
                    continue  # the action goes on past the span: a truncated pseudo-event
        seen: set[tuple[str, ...]] = set()
        queries = []
        for _ in range(max(1, pc.queries_per_event)):
            if cos is not None:
                verbs = choose_clip_verbs(cos, pc.num_verbs, sampling=pc.verb_sampling,
                                          temperature=pc.verb_temperature, rng=rng)
            else:
                verbs = pick_verbs(verb_stats, nouns, pc.num_verbs, sampling=pc.verb_sampling, rng=rng)
            query_nouns = sample_nouns(scored, pc.num_nouns, rng) if pc.noun_sampling == "sample" else nouns
            tokens = verbs + query_nouns
            key = tuple(sorted(verbs)) + tuple(query_nouns)
            if tokens and key not in seen:  # a repeated draw would only duplicate the item
                seen.add(key)
                queries.append(tokens)
        best_verb = max(cos, key=cos.get) if cos else None
        events.append([evidence, (int(s), int(e)), queries, best_verb])
    return vid, t, events


def select_events(evidence: list[float], k: int) -> list[int]:
    """Indices (in proposal order) of the ``k`` pseudo-events with the most action
    ``evidence``; ties keep proposal order."""
    order = np.argsort(-np.asarray(evidence, dtype=np.float64), kind="stable")[:k]
    return sorted(int(i) for i in order)


def label_lfvmr_spans(store: Any, vids: list[str], durations: dict[str, float], cfg: PseudoLabelConfig,
                      *, progress: bool = False, engine: str = "local", ray_address: str | None = None,
                      **_: Any) -> LabelerResult:
    """The seed LFVMR: the pseudo-events' spans, nothing else (candidates are drawn at training)."""
    shared = {"cfg": cfg, "durations": durations}
    if engine == "ray":
        per_video = _on_ray(_spans_chunk, store, vids, shared, None, ray_address)
    else:
        per_video = [_spans_video(vid, store[vid], shared) for vid in _progress(vids, progress, "lfvmr pseudo-events")]
    return [m for video_moments in per_video for m in video_moments], None


def _spans_video(vid: str, feats: np.ndarray, shared: dict[str, Any]) -> list[Any]:
    """The pseudo-events of one video (seeded by (seed, vid)): the unit of a Ray task."""
    cfg, durations = shared["cfg"], shared["durations"]
    rng = _video_rng(cfg.seed, vid)
    spans = propose_events_with(feats, dataclasses.replace(cfg.proposals, seed=int(rng.integers(2**31))))
    return [_moment(vid, durations[vid], (int(s), int(e)), feats.shape[0]) for s, e in spans]


def _spans_chunk(vids: list[str], source, shared: dict[str, Any], clip_model: Any, query_source=None) -> list:
    return [_spans_video(vid, _features(source, vid), shared) for vid in vids]


def label_lfvmr(store: Any, vids: list[str], durations: dict[str, float], cfg: PseudoLabelConfig,
                *, query_store: Any = None, progress: bool = False, engine: str = "local",
                ray_address: str | None = None, **_: Any) -> LabelerResult:
    """zeroground's LFVMR variant: per pseudo-event, one CLIP-space query vector picked from its own frames."""
    qstore = query_store if query_store is not None else (
        _open_store(cfg.query_features) if cfg.query_features else store)
    shared = {"cfg": cfg, "durations": durations}
    if qstore is not store:
        missing = [v for v in vids if v not in qstore]
        if missing:
            raise PseudoLabelError(f"query feature store has no video {missing[0]!r}")
    if engine == "ray":
        per_video = _on_ray(_lfvmr_chunk, store, vids, shared, None, ray_address,
                            query_store=None if qstore is store else qstore)
    else:
        per_video = [_lfvmr_video(vid, store[vid], None if qstore is store else qstore[vid], shared)
                     for vid in _progress(vids, progress, "lfvmr_psvlnet pseudo-labels")]
    moments, vectors = [], []
    for video_moments, video_vectors in per_video:
        moments.extend(video_moments)
        vectors.extend(video_vectors)
    dim = qstore.dim if hasattr(qstore, "dim") else (vectors[0].shape[0] if vectors else 0)
    arr = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32)  # [N, D]
    return moments, arr


def _lfvmr_video(vid: str, feats: np.ndarray, qfeats: np.ndarray | None,
                 shared: dict[str, Any]) -> tuple[list[Any], list[np.ndarray]]:
    """The per-video work of LFVMR (proposals, query vectors): the unit of a Ray task.
    ``qfeats``: the query store's frames of the video (None: ``feats`` themselves)."""
    cfg, durations = shared["cfg"], shared["durations"]
    t = feats.shape[0]
    rng = _video_rng(cfg.seed, vid)
    spans = propose_events_with(feats, dataclasses.replace(cfg.proposals, seed=int(rng.integers(2**31))))
    qfeats = feats if qfeats is None else qfeats  # [Tq, Dq]
    tq = qfeats.shape[0]
    moments, vectors = [], []
    for s, e in spans:
        # map the span onto the query store's frames (same video, maybe another rate)
        qs = min(int(np.floor(s / t * tq)), tq - 1)
        qe = max(int(np.ceil(e / t * tq)), qs + 1)
        vectors.append(select_query_vector(qfeats[qs:qe], cfg.lfvmr.selection, rng))
        moments.append(_moment(vid, durations[vid], (int(s), int(e)), t))
    return moments, vectors


# --------------------------------------------------------------------------- Ray engine

ENGINES = ("local", "ray")


def _feature_source(store: Any, vids: list[str]) -> tuple[str, Any]:
    """How a Ray task gets its videos' features: by opening the store's file/folder
    itself (no copy through the driver) or, for an in-memory store, the arrays."""
    path = getattr(store, "path", None)
    if path is not None and Path(path).exists():
        return "path", str(path)
    return "arrays", {v: np.asarray(store[v]) for v in vids}


_OPEN_STORES: dict[str, Any] = {}  # per Ray worker process: stores opened by path


def _features(source: tuple[str, Any] | None, vid: str) -> np.ndarray | None:
    if source is None:
        return None
    kind, value = source
    if kind == "arrays":
        return value[vid]
    if value not in _OPEN_STORES:
        _OPEN_STORES[value] = _open_store(value)
    return np.asarray(_OPEN_STORES[value][vid])


def _psvl_chunk(vids: list[str], source, shared: dict[str, Any], clip_model: Any, query_source=None) -> list:
    encode_phrases = _phrase_encoder(clip_model) if clip_model is not None else None
    return [_psvl_video(vid, _features(source, vid), shared, encode_phrases) for vid in vids]


def _lfvmr_chunk(vids: list[str], source, shared: dict[str, Any], clip_model: Any, query_source=None) -> list:
    return [_lfvmr_video(vid, _features(source, vid), _features(query_source, vid), shared) for vid in vids]


def _on_ray(chunk_fn: Callable[..., list], store: Any, vids: list[str], shared: dict[str, Any], clip_model: Any,
            address: str | None, query_store: Any = None) -> list:
    """``chunk_fn`` over ``vids`` as Ray tasks (a few videos each, in order); a task whose
    worker dies is retried (the work is a pure function of its inputs)."""
    from zeroground.features.ray_extract import MAX_RETRIES, init_ray

    started = init_ray(address)
    import ray

    try:
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        size = max(1, -(-len(vids) // (4 * cpus)))  # ~4 tasks per CPU: balance without per-video overhead
        chunks = [vids[i:i + size] for i in range(0, len(vids), size)]
        task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(chunk_fn)
        shared_ref = ray.put(shared)
        clip_ref = ray.put(clip_model) if clip_model is not None else None
        refs = []
        for chunk in chunks:
            source = _feature_source(store, chunk)
            qsource = _feature_source(query_store, chunk) if query_store is not None else None
            refs.append(task.remote(chunk, source, shared_ref, clip_ref, qsource))
        out: list = []
        for ref in refs:
            try:
                out.extend(ray.get(ref))
            except ray.exceptions.RayTaskError as exc:  # the error a task raised, as raised
                raise exc.as_instanceof_cause() from None
        return out
    finally:
        if started:
            ray.shutdown()


#: The pseudo-labelling strategies, by name (the CLI's ``--method`` choices). Each is
#: ``(store, video_ids, durations, config, *, progress, <in-memory inputs>...) ->
#: (moments, query vectors or None)`` and ignores in-memory inputs it does not use.
PSEUDO_LABELERS: dict[str, Callable[..., LabelerResult]] = {
    "psvl": label_psvl,
    "lfvmr": label_lfvmr_spans,
    "lfvmr_psvlnet": label_lfvmr,
}


def _progress(items: list[str], on: bool, desc: str):
    if not on:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="video")


_SECTIONS = {"proposals": ProposalConfig, "psvl": PSVLConfig, "lfvmr": LFVMRConfig}


def resolve_config(method: str, features: Any, out_path: str | Path,
                   config: PseudoLabelConfig | None = None, **knobs: Any) -> PseudoLabelConfig:
    """Apply flat ``knobs`` (``num_clusters=8``, ``noise_level=0.2``, ``corpus=...``) to a
    config; a knob name is looked up in the top level, then in each section."""
    cfg = dataclasses.replace(config) if config is not None else PseudoLabelConfig()
    cfg.proposals = dataclasses.replace(cfg.proposals)
    cfg.psvl = dataclasses.replace(cfg.psvl)
    cfg.lfvmr = dataclasses.replace(cfg.lfvmr)
    cfg.method = method
    cfg.features = str(features if isinstance(features, (str, Path)) else getattr(features, "path", "<in-memory>"))
    cfg.out = str(out_path)
    top = {f.name for f in dataclasses.fields(PseudoLabelConfig)} - set(_SECTIONS)
    for name, value in knobs.items():
        if value is None:
            continue
        if name in top:
            setattr(cfg, name, str(value) if isinstance(value, Path) else value)
            continue
        for section, cls in _SECTIONS.items():
            if name in {f.name for f in dataclasses.fields(cls)}:
                setattr(getattr(cfg, section), name, value)
                break
        else:
            allowed = sorted(top | {f.name for c in _SECTIONS.values() for f in dataclasses.fields(c)})
            raise PseudoLabelError(f"unknown pseudo-label knob {name!r}; allowed: {allowed}")
    return cfg


def pseudo_label(method: str, features_store: Any, out_path: str | Path, *,
                 config: PseudoLabelConfig | None = None, durations: Mapping[str, float] | None = None,
                 videos: list[str] | None = None, clip_model: Any = None, verb_stats: VerbStats | None = None,
                 detections: Mapping[str, Any] | None = None, query_store: Any = None,
                 progress: bool = False, engine: str = "local", ray_address: str | None = None,
                 **knobs: Any) -> PseudoLabelConfig:
    """Pseudo-label every video of ``features_store`` (a path or an open store) with ``method``.

    Writes ``out_path`` (PSVL-JSON), ``<out>.npy`` for LFVMR, and ``<out>.config.yaml``;
    returns the resolved config. In-memory objects (``clip_model``, ``verb_stats``,
    ``detections``, ``query_store``) may replace their path knobs, which is how the demo
    pipeline calls it without writing intermediate files.

    ``engine="ray"`` runs the per-video work (proposals, tagging, verbs, query vectors) as
    Ray tasks on the cluster at ``ray_address`` (default: a local one on all cores); the
    output is the same file as the local engine's, to the byte (per-video seeding).
    """
    from zeroground.config import save_config
    from zeroground.data.annotations import write_psvl_json
    from zeroground.io import atomic_path

    if engine not in ENGINES:
        raise PseudoLabelError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if ray_address and engine != "ray":
        raise PseudoLabelError("--address belongs to --engine ray")
    if method not in PSEUDO_LABELERS:
        raise PseudoLabelError(f"unknown pseudo-label method {method!r}; choose one of {sorted(PSEUDO_LABELERS)}")
    if isinstance(detections, (str, Path)):  # a path is a knob (recorded in the config)
        knobs["detections"], detections = str(detections), None
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".json":
        raise PseudoLabelError(f"output must be a .json file (PSVL-JSON), found {out_path}")
    cfg = resolve_config(method, features_store, out_path, config, **knobs)
    store = _open_store(features_store)
    vids = list(videos) if videos is not None else _video_ids(store)
    if not vids:
        raise PseudoLabelError(f"feature store {cfg.features} holds no videos")
    if hasattr(store, "require"):
        store.require(vids)
    durs = _durations(store, vids, cfg, durations)
    moments, vectors = PSEUDO_LABELERS[method](
        store, vids, durs, cfg, clip_model=clip_model, verb_stats=verb_stats, detections=detections,
        query_store=query_store, progress=progress, engine=engine, ray_address=ray_address)
    if not moments:
        raise PseudoLabelError("no pseudo-labels were produced (no nouns or verbs found for any event?)")
    if vectors is not None:
        with atomic_path(out_path.with_suffix(".npy")) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, vectors)
    write_psvl_json(moments, out_path)
    save_config(cfg, config_path_for(out_path))
    log.info("wrote %d %s pseudo-labels for %d videos to %s", len(moments), method, len(vids), out_path)
    return cfg


def config_path_for(out_path: str | Path) -> Path:
    """Where the resolved pseudo-label config of ``out_path`` lives."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.stem + ".config.yaml")


def vectors_path_for(out_path: str | Path) -> Path:
    """Where the LFVMR query vectors of ``out_path`` live (same stem, ``.npy``)."""
    return Path(out_path).with_suffix(".npy")


def load_pseudo_vectors(out_path: str | Path, expected: int | None = None) -> np.ndarray:
    """The ``[N, D]`` query vectors written beside an LFVMR pseudo-label file."""
    path = vectors_path_for(out_path)
    if not path.is_file():
        raise PseudoLabelError(f"{path}: LFVMR query vectors not found beside {out_path} "
                               "(was it written with --method lfvmr_psvlnet?)")
    arr = np.load(path)
    if arr.ndim != 2:
        raise PseudoLabelError(f"{path}: expected [N, D] query vectors, found shape {arr.shape}")
    if expected is not None and arr.shape[0] != expected:
        raise PseudoLabelError(f"{path}: {arr.shape[0]} query vectors for {expected} pseudo-label items")
    return arr
