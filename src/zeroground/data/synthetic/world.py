"""The generated demo world: what happens in each video, and how people would say it.

A video is a timeline of segments: idle stretches, walks between objects and 3–6
*events* (an action on an object: pick up the cup, open the door, turn on the lamp).
Only events are described by captions; idle and walking time is what makes a
video *untrimmed*. Each event gets several paraphrases drawn from a template
grammar. The grammar's sentences are split once, deterministically, into a pool
for training (tiny CLIP, corpus, supervised upper bound) and a held-out pool used
only for test queries, so test sentences are never seen verbatim in training.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field

import numpy as np

# Objects of the world and what can be done with them.
OBJECTS: tuple[str, ...] = ("door", "cup", "box", "book", "lamp", "ball")
PICKABLE = {"cup", "box", "book", "ball"}
OPENABLE = {"door", "box", "book"}
SWITCHABLE = {"lamp"}
ACTIONS: tuple[str, ...] = ("pick_up", "put_down", "open", "close", "turn_on", "turn_off")

# Five floor slots (x centre on the 64-unit canvas); the actor stands 6 units right of an object.
SLOT_X: tuple[int, ...] = (7, 19, 31, 43, 55)
ACTOR_OFFSET = 6

SUBJECTS = ("the person", "a person", "someone", "a man", "a woman", "the man", "the woman")
NOUN_SYNONYMS = {
    "door": ("door",),
    "cup": ("cup", "mug"),
    "box": ("box", "carton"),
    "book": ("book",),
    "lamp": ("lamp", "light"),
    "ball": ("ball",),
}
# Verb phrases in third person; "{o}" is the object noun phrase.
VERB_PHRASES = {
    "pick_up": ("picks up {o}", "grabs {o}", "lifts {o}", "takes {o}", "picks {o} up"),
    "put_down": ("puts down {o}", "puts {o} down", "sets {o} down", "places {o} on the floor", "drops {o}"),
    "open": ("opens {o}", "pulls {o} open"),
    "close": ("closes {o}", "shuts {o}"),
    "turn_on": ("turns on {o}", "switches on {o}", "turns {o} on"),
    "turn_off": ("turns off {o}", "switches off {o}", "turns {o} off"),
}
DETERMINERS = ("the", "a")
ENDINGS = ("", " slowly", " in the room", " again")
# Captions for the stretches between events: used only to train the tiny CLIP,
# so that "nothing happening" has its own place in the joint space.
IDLE_CAPTIONS = (
    "the person stands still", "someone is standing in the room", "a man waits",
    "a woman stands in a room", "the person is doing nothing",
)
WALK_CAPTIONS = (
    "the person walks across the room", "someone walks", "a man is walking",
    "a woman walks to the other side of the room",
)
# Held-out share of the caption grammar (test queries only).
HELD_OUT_FRACTION = 0.25


def _held_out(sentence: str) -> bool:
    """Stable assignment of a sentence to the held-out pool (hash, not RNG)."""
    h = int(hashlib.sha1(sentence.encode()).hexdigest()[:8], 16)
    return (h % 1000) < HELD_OUT_FRACTION * 1000


def all_captions(action: str, obj: str) -> list[str]:
    """Every sentence of the grammar for one (action, object) event."""
    out = []
    for subj, vp, noun, det, end in itertools.product(
        SUBJECTS, VERB_PHRASES[action], NOUN_SYNONYMS[obj], DETERMINERS, ENDINGS
    ):
        out.append(f"{subj} {vp.format(o=f'{det} {noun}')}{end}")
    return out


def caption_pool(action: str, obj: str, held_out: bool) -> list[str]:
    """Training (``held_out=False``) or test (``held_out=True``) paraphrases of an event."""
    return [c for c in all_captions(action, obj) if _held_out(c) == held_out]


def valid_events() -> list[tuple[str, str]]:
    out = []
    for obj in OBJECTS:
        if obj in PICKABLE:
            out += [("pick_up", obj), ("put_down", obj)]
        if obj in OPENABLE:
            out += [("open", obj), ("close", obj)]
        if obj in SWITCHABLE:
            out += [("turn_on", obj), ("turn_off", obj)]
    return out


def noun_vocabulary() -> list[str]:
    """Nouns a zero-shot tagger may look for (objects, their synonyms, people, the room)."""
    nouns = {n for syns in NOUN_SYNONYMS.values() for n in syns}
    nouns |= {"person", "man", "woman", "room", "floor"}
    return sorted(nouns)


@dataclass
class Segment:
    """One stretch of a timeline, in seconds. ``kind`` is idle, walk or event."""

    kind: str
    start: float
    end: float
    action: str | None = None
    obj: str | None = None
    x_from: float = 0.0  # actor x at the start
    x_to: float = 0.0  # actor x at the end (differs only for walks)
    target_slot: int | None = None  # where a put-down object lands
    captions: list[str] = field(default_factory=list)


@dataclass
class VideoPlan:
    """Everything needed to render one video and to annotate it."""

    video: str
    duration: float
    fps: float
    wall: tuple[int, int, int]
    floor: tuple[int, int, int]
    shirt: tuple[int, int, int]
    slots: dict[str, int]  # object -> slot index at the start
    open0: dict[str, bool]  # openable object -> open at the start
    lamp_on0: bool
    segments: list[Segment]
    birds: list[tuple[float, float, float, int]]  # (start, end, y, direction) of a passing bird
    flicker: tuple[float, float]  # (period s, phase) of the slow brightness drift
    noise_seed: int

    @property
    def events(self) -> list[Segment]:
        return [s for s in self.segments if s.kind == "event"]


@dataclass
class WorldConfig:
    """Knobs of the generated world (sizes chosen so the demo fits its time budget)."""

    fps: float = 4.0  # source frame rate of the mp4 files
    scale: int = 2  # pixels per canvas unit; frames are (64*scale)^2
    min_events: int = 3
    max_events: int = 6
    min_duration: float = 30.0
    max_duration: float = 60.0
    min_event_s: float = 4.0
    max_event_s: float = 12.0
    min_idle_s: float = 1.0
    max_idle_s: float = 6.0
    walk_speed: float = 12.0  # canvas units per second
    captions_per_event: int = 3
    noise_std: float = 3.0  # pixel noise (0-255 scale), a distractor for the encoder


def _pastel(rng: np.random.Generator, lo: int, hi: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, size=3))  # type: ignore[return-value]


def plan_video(video: str, rng: np.random.Generator, cfg: WorldConfig, held_out_captions: bool) -> VideoPlan:
    """Draw one video's objects, state and timeline from ``rng``."""
    objs = list(rng.choice(OBJECTS, size=4, replace=False))
    slot_ids = list(rng.permutation(len(SLOT_X))[:4])
    slots = {str(o): int(s) for o, s in zip(objs, slot_ids)}
    open0 = {o: bool(rng.random() < (0.4 if o == "door" else 0.0)) for o in slots if o in OPENABLE}
    lamp_on0 = bool(rng.random() < 0.5)
    wall = _pastel(rng, 150, 235)
    floor = _pastel(rng, 70, 130)
    shirts = [(20, 20, 20), (230, 230, 230), (150, 40, 150), (0, 140, 140), (120, 120, 0)]
    shirt = shirts[int(rng.integers(len(shirts)))]

    # Walk the state machine: choose events that make sense in the current state.
    n_events = int(rng.integers(cfg.min_events, cfg.max_events + 1))
    state_slot = dict(slots)
    state_open = dict(open0)
    lamp_on = lamp_on0
    held: str | None = None
    used: set[tuple[str, str]] = set()
    x = float(rng.uniform(10, 58))
    t = float(rng.uniform(0.0, 4.0))
    segments: list[Segment] = []
    if t > 0:
        segments.append(Segment("idle", 0.0, t, x_from=x, x_to=x))
    budget = cfg.max_duration - 1.0
    for _ in range(n_events):
        options: list[tuple[str, str]] = []
        if held is not None:
            options = [("put_down", held)]
        else:
            for o in state_slot:
                if o in PICKABLE and not state_open.get(o, False):
                    options.append(("pick_up", o))
                if o in OPENABLE:
                    options.append(("close", o) if state_open[o] else ("open", o))
                if o in SWITCHABLE:
                    options.append(("turn_off", o) if lamp_on else ("turn_on", o))
        options = [e for e in options if e not in used]
        if not options:
            break
        action, obj = options[int(rng.integers(len(options)))]
        target_slot = None
        if action == "put_down":
            free = [i for i in range(len(SLOT_X)) if i not in state_slot.values()]
            target_slot = int(free[int(rng.integers(len(free)))])
            x_target = SLOT_X[target_slot] + ACTOR_OFFSET
        else:
            x_target = SLOT_X[state_slot[obj]] + ACTOR_OFFSET
        walk_s = abs(x_target - x) / cfg.walk_speed
        ev_s = float(rng.uniform(cfg.min_event_s, cfg.max_event_s))
        idle_s = float(rng.uniform(cfg.min_idle_s, cfg.max_idle_s))
        if t + walk_s + ev_s + idle_s > budget:
            if len(used) >= cfg.min_events:
                break
            ev_s, idle_s = cfg.min_event_s, cfg.min_idle_s  # squeeze to keep min_events
            if t + walk_s + ev_s + idle_s > cfg.max_duration:
                break
        if walk_s > 0:
            segments.append(Segment("walk", t, t + walk_s, x_from=x, x_to=x_target))
            t += walk_s
        x = x_target
        pool = caption_pool(action, obj, held_out_captions)
        idx = rng.choice(len(pool), size=min(cfg.captions_per_event, len(pool)), replace=False)
        segments.append(Segment("event", t, t + ev_s, action=action, obj=obj, x_from=x, x_to=x,
                                target_slot=target_slot, captions=[pool[int(i)] for i in idx]))
        t += ev_s
        segments.append(Segment("idle", t, t + idle_s, x_from=x, x_to=x))
        t += idle_s
        used.add((action, obj))
        if action == "pick_up":
            held = obj
            del state_slot[obj]
        elif action == "put_down":
            held = None
            state_slot[obj] = int(target_slot)  # type: ignore[arg-type]
        elif action in ("open", "close"):
            state_open[obj] = action == "open"
        elif action in ("turn_on", "turn_off"):
            lamp_on = action == "turn_on"
    duration = max(t, cfg.min_duration)
    if duration > t:  # stretch the final idle so short videos still reach min_duration
        segments[-1].end = duration
    duration = float(np.floor(duration * cfg.fps) / cfg.fps)  # whole number of frames
    segments[-1].end = duration
    birds = []
    for _ in range(int(rng.integers(0, 4))):
        b0 = float(rng.uniform(0, duration - 3))
        birds.append((b0, b0 + float(rng.uniform(2, 5)), float(rng.uniform(3, 12)), int(rng.choice([-1, 1]))))
    flicker = (float(rng.uniform(8, 20)), float(rng.uniform(0, 2 * np.pi)))
    return VideoPlan(video, duration, cfg.fps, wall, floor, shirt, slots, open0, lamp_on0,
                     segments, birds, flicker, int(rng.integers(2**31)))
