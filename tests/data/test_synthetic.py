"""The generated demo world: reproducible bytes, decodable videos, captions that match spans."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zeroground.data.synthetic import SPLITS, WorldConfig, load_plans, make_world
from zeroground.data.synthetic.render import COLOURS, n_frames, render_frame, scene_at
from zeroground.data.synthetic.world import (
    SLOT_X,
    all_captions,
    caption_pool,
    plan_video,
    valid_events,
)

# Short videos keep the tests fast; the structure is the demo's.
SMALL = WorldConfig(min_events=2, max_events=3, min_duration=8.0, max_duration=16.0, min_event_s=2.0,
                    max_event_s=4.0, min_idle_s=0.5, max_idle_s=1.0)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    return out, make_world(out, "test", 2, seed=7, cfg=SMALL)


def test_same_seed_gives_same_bytes_and_annotations(world, tmp_path):
    out, first = world
    second = make_world(tmp_path, "test", 2, seed=7, cfg=SMALL)
    for a, b in zip(first.videos, second.videos):
        assert a.read_bytes() == b.read_bytes()
    assert first.annotations.read_text() == second.annotations.read_text()
    other = make_world(tmp_path / "other", "test", 1, seed=8, cfg=SMALL)
    assert other.videos[0].read_bytes() != first.videos[0].read_bytes()


def test_rendering_in_two_processes_gives_the_same_bytes(world, tmp_path):
    out, first = world
    parallel = make_world(tmp_path, "test", 2, seed=7, cfg=SMALL, workers=2)
    assert [p.name for p in parallel.videos] == [p.name for p in first.videos]
    for a, b in zip(first.videos, parallel.videos):
        assert a.read_bytes() == b.read_bytes()
    assert first.annotations.read_text() == parallel.annotations.read_text()
    assert first.world.read_text() == parallel.world.read_text()


def test_video_i_does_not_depend_on_world_size(world, tmp_path):
    _, small = world
    bigger = make_world(tmp_path, "test", 3, seed=7, cfg=SMALL)
    assert bigger.videos[1].read_bytes() == small.videos[1].read_bytes()


def test_decoded_mp4_has_every_frame_at_the_plan_rate(world):
    import av

    _, split = world
    for plan, path in zip(split.plans, split.videos):
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
            assert float(stream.average_rate) == pytest.approx(plan.fps)
        assert len(frames) == n_frames(plan) == round(plan.duration * plan.fps)
        assert frames[0].shape == (64 * SMALL.scale, 64 * SMALL.scale, 3)
        # lossy, but every decoded frame is closest to its own rendered frame, not to a neighbour's
        rendered = [render_frame(plan, k, SMALL.scale, SMALL.noise_std).astype(int) for k in range(len(frames))]
        for k, frame in enumerate(frames):
            own = np.abs(frame.astype(int) - rendered[k]).mean()
            assert own < 4, (plan.video, k, own)  # measured 2.3-2.4 (x264 on yuv420p)
            for j in (k - 1, k + 1):
                if 0 <= j < len(frames):
                    assert np.abs(frame.astype(int) - rendered[j]).mean() > own + 0.3, (plan.video, k, j)


def test_annotations_are_the_events_with_their_captions(world):
    from zeroground.data.annotations import read_psvl_json

    _, split = world
    moments = read_psvl_json(split.annotations)
    plans = {p.video: p for p in load_plans(split.world)}
    expected = [(p.video, ev.start, ev.end, c) for p in split.plans for ev in p.events for c in ev.captions]
    assert len(moments) == len(expected)
    for m, (vid, s, e, c) in zip(moments, expected):
        assert m.video == vid and m.sentence == c
        assert m.start == pytest.approx(s, abs=1e-9) and m.end == pytest.approx(e, abs=1e-9)
        assert 0 <= m.start < m.end <= m.duration == plans[vid].duration
    for plan in split.plans:
        ev = plan.events
        assert all(a.end <= b.start for a, b in zip(ev, ev[1:])), "events must not overlap"
        assert len({(e.action, e.obj) for e in ev}) == len(ev), "an event type appears once per video"
        for e in ev:
            # test captions come from the held-out paraphrases only
            assert set(e.captions) <= set(caption_pool(e.action, e.obj, held_out=True))


def test_held_out_paraphrases_are_disjoint_from_training_ones():
    for action, obj in valid_events():
        train, held = caption_pool(action, obj, False), caption_pool(action, obj, True)
        assert train and held
        assert not set(train) & set(held)
        assert sorted(train + held) == sorted(all_captions(action, obj))


def test_clip_train_split_writes_corpus_and_nouns(tmp_path):
    split = make_world(tmp_path, "clip_train", 1, seed=0, cfg=SMALL)
    lines = split.corpus.read_text().splitlines()
    assert lines == sorted({c for p in split.plans for e in p.events for c in e.captions})
    assert "cup" in split.nouns.read_text().split()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown split 'val'"):
        make_world("unused", "val", 1)
    with pytest.raises(ValueError, match="n_videos must be >= 1"):
        make_world("unused", "test", 0)
    assert set(SPLITS) == {"clip_train", "train", "test"}


def _lamp_plan():
    """A plan with a turn-on or turn-off lamp event (searching seeds deterministically)."""
    for i in range(200):
        plan = plan_video("v", np.random.default_rng([0, 9, i]), SMALL, held_out_captions=False)
        for ev in plan.events:
            if ev.obj == "lamp" and ev.action in ("turn_on", "turn_off"):
                return plan, ev
    raise AssertionError("no lamp event in 200 plans")


def test_frames_show_the_event_state_change():
    """The lamp shade is lit after turn_on (dark after turn_off), and not before."""
    plan, ev = _lamp_plan()
    st_before, _ = scene_at(plan, ev.start - 0.01)
    slot = st_before.slots["lamp"]
    x = SLOT_X[slot]

    def shade(t):
        img = render_frame(plan, int(round(t * plan.fps)), scale=1, noise_std=0)
        return img[50 - 27, x].astype(int)

    on = np.asarray(COLOURS["lamp_on"])
    lit_before = np.abs(shade(ev.start - 0.3) - on).max() < 30
    lit_after = np.abs(shade(ev.end - 0.3) - on).max() < 30
    assert lit_after == (ev.action == "turn_on")
    assert lit_before != lit_after


def test_world_json_round_trips(world):
    _, split = world
    plans = load_plans(split.world)
    assert [p.video for p in plans] == [p.video for p in split.plans]
    assert json.loads(split.world.read_text())["seed"] == 7
    for a, b in zip(plans, split.plans):
        assert a == b
