"""A generated video world for the offline demo and the tests.

``make_world(out_dir, split, n_videos, seed)`` renders seeded videos to mp4 with
PyAV and writes their annotations. Splits:

- ``clip_train``: videos whose frame–caption pairs train the tiny CLIP (image–text
  pairs only, never spans), plus the plain-text corpus and noun vocabulary;
- ``train``: unlabelled videos for pseudo-labelling (their true spans are written
  too, but only the ``supervised`` upper bound may read them);
- ``test``: held-out videos described with held-out caption paraphrases.

Layout under ``out_dir``: ``videos/<split>_<i>.mp4``,
``annotations/<split>.json`` (PSVL JSON: one item per caption) and
``annotations/<split>_world.json`` (the full timelines, for the curious and the tests).
"""

from __future__ import annotations

from zeroground.errors import ZerogroundError

import dataclasses
import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import numpy as np

from zeroground.data.synthetic.render import n_frames, render_frame
from zeroground.data.synthetic.world import (
    IDLE_CAPTIONS,
    WALK_CAPTIONS,
    VideoPlan,
    WorldConfig,
    noun_vocabulary,
    plan_video,
)
from zeroground.io import atomic_path, atomic_write_json, atomic_write_text

SPLITS = {"clip_train": 1, "train": 2, "test": 3}


class WorldError(ZerogroundError, ValueError):
    """A demo world that cannot be made (unknown split, no videos asked for)."""


@dataclass
class WorldSplit:
    """What ``make_world`` wrote for one split."""

    split: str
    videos: list[Path]
    annotations: Path  # PSVL JSON with true spans and captions
    world: Path  # full timelines
    plans: list[VideoPlan]
    corpus: Path | None = None  # clip_train only: one sentence per line
    nouns: Path | None = None  # clip_train only: noun vocabulary, one per line


def write_mp4(path: str | Path, frames: Iterable[np.ndarray], fps: float) -> Path:
    """Encode uint8 RGB frames ``[H, W, 3]`` to an H.264 mp4 (atomically, deterministic bytes)."""
    import av

    path = Path(path)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = None
            for frame in frames:
                if stream is None:
                    stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
                    stream.width, stream.height = frame.shape[1], frame.shape[0]
                    stream.pix_fmt = "yuv420p"
                    stream.codec_context.thread_count = 1  # one thread: identical bytes every run
                    stream.options = {"crf": "20", "preset": "ultrafast"}
                vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
                for packet in stream.encode(vf):
                    container.mux(packet)
            if stream is None:
                raise WorldError(f"{path}: no frames to encode")
            for packet in stream.encode():
                container.mux(packet)
    path.chmod(0o644)  # the temporary file was private; a video is for everyone to watch
    return path


def render_video(plan: VideoPlan, cfg: WorldConfig) -> np.ndarray:
    """All frames of ``plan`` as uint8 ``[N, H, W, 3]``."""
    return np.stack([render_frame(plan, i, cfg.scale, cfg.noise_std) for i in range(n_frames(plan))])


def _psvl_items(plans: list[VideoPlan]) -> list[dict]:
    items = []
    for plan in plans:
        for ev in plan.events:
            for sentence in ev.captions:
                items.append({
                    "vid": plan.video,
                    "duration": plan.duration,
                    "timestamp": [ev.start / plan.duration, min(ev.end / plan.duration, 1.0)],
                    "sentence": sentence,
                })
    return items


def write_annotations(plans: list[VideoPlan], path: str | Path) -> Path:
    """PSVL JSON of the true events, one item per caption."""
    from zeroground.data.annotations import Moment, write_psvl_json

    items = _psvl_items(plans)
    moments = [Moment(video=it["vid"], duration=it["duration"], start=it["timestamp"][0] * it["duration"],
                      end=it["timestamp"][1] * it["duration"], sentence=it["sentence"]) for it in items]
    write_psvl_json(moments, path)
    return Path(path)


def _render_to_file(plan: VideoPlan, cfg: WorldConfig, path: Path) -> Path:
    return write_mp4(path, render_video(plan, cfg), plan.fps)


def make_world(out_dir: str | Path, split: str, n_videos: int, seed: int = 0,
               cfg: WorldConfig | None = None, workers: int = 1) -> WorldSplit:
    """Render ``n_videos`` videos of ``split`` under ``out_dir`` and write their annotations.

    Video ``i`` of a split depends only on (seed, split, i), so a larger world
    extends a smaller one instead of reshuffling it -- and the videos can be rendered
    in ``workers`` processes side by side with the same bytes as one after the other.
    """
    if split not in SPLITS:
        raise WorldError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    if n_videos < 1:
        raise WorldError(f"n_videos must be >= 1, found {n_videos}")
    cfg = cfg or WorldConfig()
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    plans = [plan_video(f"{split}_{i:04d}", np.random.default_rng([seed, SPLITS[split], i]), cfg,
                        held_out_captions=(split == "test")) for i in range(n_videos)]
    videos = [out / "videos" / f"{plan.video}.mp4" for plan in plans]
    if workers > 1 and n_videos > 1:  # rendering is one core's numpy work per video
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: the caller may hold torch/OpenMP threads that a forked child would inherit locked
        with ProcessPoolExecutor(min(workers, n_videos), mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(_render_to_file, plans, [cfg] * n_videos, videos))
    else:
        for plan, path in zip(plans, videos):
            _render_to_file(plan, cfg, path)
    ann = write_annotations(plans, out / "annotations" / f"{split}.json")
    world = out / "annotations" / f"{split}_world.json"
    atomic_write_json(world, {"config": dataclasses.asdict(cfg), "seed": seed,
                              "videos": [dataclasses.asdict(p) for p in plans]}, indent=None)
    result = WorldSplit(split, videos, ann, world, plans)
    if split == "clip_train":
        sentences = sorted({c for p in plans for ev in p.events for c in ev.captions})
        result.corpus = atomic_write_text(out / "corpus.txt", "\n".join(sentences) + "\n")
        result.nouns = atomic_write_text(out / "nouns.txt", "\n".join(noun_vocabulary()) + "\n")
    return result


def load_plans(world_json: str | Path) -> list[VideoPlan]:
    """Read the timelines written by ``make_world`` back into ``VideoPlan`` objects."""
    from zeroground.data.synthetic.world import Segment

    data = json.loads(Path(world_json).read_text())
    plans = []
    for v in data["videos"]:
        v = dict(v)
        v["segments"] = [Segment(**s) for s in v["segments"]]
        for k in ("wall", "floor", "shirt", "flicker"):
            v[k] = tuple(v[k])
        v["birds"] = [tuple(b) for b in v["birds"]]
        plans.append(VideoPlan(**v))
    return plans


def frame_captions(plan: VideoPlan, t: float) -> tuple[str, list[str]]:
    """(kind, captions) describing the frame at time ``t``: an event's paraphrases,
    or generic idle/walk sentences. Used to make tiny-CLIP image–text pairs."""
    for seg in plan.segments:
        if seg.start <= t < seg.end:
            if seg.kind == "event":
                return "event", list(seg.captions)
            return seg.kind, list(IDLE_CAPTIONS if seg.kind == "idle" else WALK_CAPTIONS)
    return "idle", list(IDLE_CAPTIONS)


__all__ = ["make_world", "WorldConfig", "WorldSplit", "VideoPlan", "load_plans", "frame_captions",
           "write_mp4", "render_video", "noun_vocabulary", "SPLITS"]
