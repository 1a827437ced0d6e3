"""Drawing the demo world into RGB frames with plain numpy.

The scene is a side view on a 64×64 canvas (floor at y = 50): a wall, a floor,
four objects in floor slots and an actor. Every event leaves a mark a single
frame can show — the actor's pose (crouching, arms overhead, one or two arms
reaching) and the object's state (door open, lamp lit, cup in the hand) — so an
image encoder can tell events apart, as real CLIP can tell "holding a cup" from
"opening a door". Distractors (a passing bird, slow brightness drift, pixel
noise, random colours) keep it from being trivial.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zeroground.data.synthetic.world import ACTOR_OFFSET, SLOT_X, Segment, VideoPlan

CANVAS = 64
FLOOR_Y = 50
SKIN = (230, 190, 150)
PANTS = (50, 50, 90)
COLOURS = {
    "door": (139, 90, 43), "door_knob": (240, 210, 40), "door_gap": (30, 25, 20), "door_frame": (90, 60, 30),
    "cup": (220, 40, 40), "box": (40, 80, 220), "box_lid": (20, 50, 160), "box_inside": (10, 10, 40),
    "book": (40, 170, 60), "book_spine": (20, 100, 30), "pages": (245, 245, 235),
    "lamp_pole": (100, 100, 100), "lamp_off": (120, 110, 60), "lamp_on": (255, 235, 90),
    "glow": (255, 250, 200), "ball": (250, 140, 0), "bird": (40, 40, 40),
}


def _rect(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, colour) -> None:
    h, w = img.shape[:2]
    a, b = max(int(round(x0)), 0), min(int(round(x1)), w)
    c, d = max(int(round(y0)), 0), min(int(round(y1)), h)
    if a < b and c < d:
        img[c:d, a:b] = colour


def _disk(img: np.ndarray, cx: float, cy: float, r: float, colour, alpha: float = 1.0) -> None:
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    m = (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r
    img[m] = (1 - alpha) * img[m] + alpha * np.asarray(colour, dtype=np.float32)


def _line(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, colour) -> None:
    n = int(max(abs(x1 - x0), abs(y1 - y0)) * 2) + 2
    xs = np.clip(np.round(np.linspace(x0, x1, n)).astype(int), 0, img.shape[1] - 1)
    ys = np.clip(np.round(np.linspace(y0, y1, n)).astype(int), 0, img.shape[0] - 1)
    img[ys, xs] = colour


def draw_object(img: np.ndarray, obj: str, x: float, bottom: float = FLOOR_Y, openness: float = 0.0,
                lit: bool = False) -> None:
    """Draw ``obj`` centred at ``x`` standing on ``bottom`` (on the floor or in a hand)."""
    b = bottom
    if obj == "door":
        _rect(img, x - 5, b - 25, x + 5, b, COLOURS["door_frame"])
        _rect(img, x - 4, b - 24, x + 4, b, COLOURS["door_gap"])
        panel = 8 * (1 - openness) + 2 * openness
        _rect(img, x - 4, b - 24, x - 4 + panel, b, COLOURS["door"])
        if openness < 0.5:
            _rect(img, x + 1, b - 12, x + 3, b - 10, COLOURS["door_knob"])
    elif obj == "cup":
        _rect(img, x - 2, b - 5, x + 2, b, COLOURS["cup"])
        _rect(img, x + 2, b - 4, x + 3, b - 2, COLOURS["cup"])
    elif obj == "box":
        _rect(img, x - 4, b - 7, x + 4, b, COLOURS["box"])
        if openness > 0:
            _rect(img, x - 4, b - 7, x + 4, b - 5, COLOURS["box_inside"])
            lift = 6 * openness
            _rect(img, x - 6, b - 9 - lift, x - 4, b - 7 + 2 - lift * 0.3, COLOURS["box_lid"])
        else:
            _rect(img, x - 4, b - 9, x + 4, b - 7, COLOURS["box_lid"])
    elif obj == "book":
        if openness > 0.5:
            _rect(img, x - 6, b - 2, x + 6, b, COLOURS["book"])
            _rect(img, x - 5, b - 3, x + 5, b - 1, COLOURS["pages"])
            _rect(img, x - 0.5, b - 3, x + 0.5, b - 1, COLOURS["book_spine"])
        else:
            _rect(img, x - 3, b - 3, x + 4, b, COLOURS["book"])
            _rect(img, x - 3, b - 3, x - 2, b, COLOURS["book_spine"])
    elif obj == "lamp":
        if lit:
            _disk(img, x, b - 26, 10, COLOURS["glow"], alpha=0.55)
        _rect(img, x, b - 24, x + 1, b, COLOURS["lamp_pole"])
        _rect(img, x - 3, b - 1, x + 4, b, COLOURS["lamp_pole"])
        _rect(img, x - 3, b - 29, x + 4, b - 24, COLOURS["lamp_on"] if lit else COLOURS["lamp_off"])
    elif obj == "ball":
        _disk(img, x, b - 3, 3, COLOURS["ball"])
    else:  # pragma: no cover - guarded by the world's object list
        raise ValueError(f"unknown object {obj!r}")


@dataclass
class Pose:
    """Where the actor is and what the body does in one frame."""

    x: float
    crouch: bool
    hands: list[tuple[float, float]]
    step: float = 0.0  # leg swing while walking, in [-1, 1]
    held_at: tuple[float, float] | None = None  # (x, bottom) of a carried object


def draw_actor(img: np.ndarray, pose: Pose, shirt) -> None:
    x = pose.x
    if pose.crouch:
        top, hip, head_y = 38, 46, 35
        _line(img, x - 1, hip, x - 3, FLOOR_Y - 1, PANTS)
        _line(img, x + 1, hip, x + 3, FLOOR_Y - 1, PANTS)
    else:
        top, hip, head_y = 33, 43, 30
        s = 1.5 * pose.step
        _line(img, x - 1, hip, x - 2 + s, FLOOR_Y - 1, PANTS)
        _line(img, x + 1, hip, x + 2 - s, FLOOR_Y - 1, PANTS)
    _rect(img, x - 2, top, x + 2, hip, shirt)
    _disk(img, x, head_y, 2.6, SKIN)
    for i, (hx, hy) in enumerate(pose.hands):
        sx = x - 1.5 if i == 0 else x + 1.5
        _line(img, sx, top + 1, hx, hy, SKIN)


@dataclass
class WorldState:
    slots: dict[str, int | None]
    openness: dict[str, float]
    lamp_on: bool
    held: str | None


def _apply(seg: Segment, st: WorldState) -> None:
    """Effect of a finished event on the world."""
    a, o = seg.action, seg.obj
    if a == "pick_up":
        st.held, st.slots[o] = o, None  # type: ignore[index]
    elif a == "put_down":
        st.held, st.slots[o] = None, seg.target_slot  # type: ignore[index]
    elif a in ("open", "close"):
        st.openness[o] = 1.0 if a == "open" else 0.0  # type: ignore[index]
    elif a in ("turn_on", "turn_off"):
        st.lamp_on = a == "turn_on"


def scene_at(plan: VideoPlan, t: float) -> tuple[WorldState, Pose]:
    """World state and actor pose at time ``t`` (seconds), replaying the timeline."""
    st = WorldState(dict(plan.slots), {o: float(v) for o, v in plan.open0.items()}, plan.lamp_on0, None)
    seg = plan.segments[-1]
    for s in plan.segments:
        if t < s.end:
            seg = s
            break
        if s.kind == "event":
            _apply(s, st)
    p = 0.0 if seg.end <= seg.start else min(max((t - seg.start) / (seg.end - seg.start), 0.0), 1.0)
    x = seg.x_from + (seg.x_to - seg.x_from) * p
    down = [(x - 3, 42), (x + 3, 42)]
    carry = (x - 5, 38.0)
    if seg.kind != "event":
        step = float(np.sin(t * 2 * np.pi * 1.5)) if seg.kind == "walk" else 0.0
        pose = Pose(x, False, [(x - 4, 37), (x - 4, 38)] if st.held else down, step,
                    carry if st.held else None)
        return st, pose
    a, o = seg.action, seg.obj
    reach = min(p / 0.4, 1.0)  # the state change happens in the first 40 % of an event
    low = o in ("box", "book", "cup", "ball")
    if a == "pick_up":
        if p < 0.3:
            pose = Pose(x, True, [(x - 5, 47), (x - 4, 48)])
        else:
            st.slots[o] = None  # type: ignore[index]
            pose = Pose(x, False, [(x - 2, 23), (x + 2, 23)], held_at=(x, 23.0))
            st.held = o
    elif a == "put_down":
        st.held = None
        if p < 0.7:
            pose = Pose(x, True, [(x - 5, 46), (x - 5, 47)])
        else:
            pose = Pose(x, False, down)
        st.slots[o] = seg.target_slot  # type: ignore[index]
    elif a in ("open", "close"):
        st.openness[o] = reach if a == "open" else 1.0 - reach  # type: ignore[index]
        hy = 45 if low else 37
        hands = [(x - 6, hy), (x + 3, 42)] if a == "open" else [(x - 6, hy - 1), (x - 6, hy + 1)]
        pose = Pose(x, low, hands)
    else:  # turn_on / turn_off
        st.lamp_on = (p >= 0.3) if a == "turn_on" else (p < 0.3)
        hands = [(x - 5, 24), (x + 3, 42)] if a == "turn_on" else [(x - 5, 24), (x - 5, 27)]
        pose = Pose(x, False, hands)
    return st, pose


def render_frame(plan: VideoPlan, index: int, scale: int = 2, noise_std: float = 3.0) -> np.ndarray:
    """RGB frame ``index`` of ``plan`` as uint8 ``[64*scale, 64*scale, 3]``."""
    t = index / plan.fps
    st, pose = scene_at(plan, t)
    img = np.empty((CANVAS, CANVAS, 3), np.float32)  # [H, W, 3] canvas units
    img[:FLOOR_Y] = plan.wall
    img[FLOOR_Y:] = plan.floor
    img[FLOOR_Y - 1:FLOOR_Y] = np.asarray(plan.floor) * 0.7
    if "lamp" in st.slots and st.slots["lamp"] is not None:
        draw_object(img, "lamp", SLOT_X[st.slots["lamp"]], lit=st.lamp_on)
    for obj, slot in st.slots.items():
        if obj != "lamp" and slot is not None:
            draw_object(img, obj, SLOT_X[slot], openness=st.openness.get(obj, 0.0))
    for b0, b1, by, direction in plan.birds:
        if b0 <= t < b1:
            q = (t - b0) / (b1 - b0)
            bx = (q if direction > 0 else 1 - q) * (CANVAS + 4) - 2
            flap = 1 if index % 2 else 0
            _rect(img, bx - 1, by - flap, bx + 2, by + 1 - flap, COLOURS["bird"])
    draw_actor(img, pose, plan.shirt)
    if st.held is not None and pose.held_at is None:
        pose.held_at = (pose.x - 5, 38.0)
    if st.held is not None and pose.held_at is not None:
        draw_object(img, st.held, pose.held_at[0], bottom=pose.held_at[1])
    period, phase = plan.flicker
    img *= 1.0 + 0.06 * np.sin(2 * np.pi * t / period + phase)
    if noise_std > 0:  # sensor-like noise on canvas pixels (cheap to draw and to encode)
        rng = np.random.default_rng([plan.noise_seed, index])
        img += noise_std * rng.standard_normal(img.shape, dtype=np.float32)
    out = np.clip(np.round(img), 0, 255).astype(np.uint8)
    if scale > 1:
        out = np.repeat(np.repeat(out, scale, axis=0), scale, axis=1)
    return out


def n_frames(plan: VideoPlan) -> int:
    return int(round(plan.duration * plan.fps))


__all__ = ["render_frame", "scene_at", "n_frames", "draw_object", "Pose", "ACTOR_OFFSET"]
