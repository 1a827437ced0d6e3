"""LFVMR language-free pseudo queries (Kim et al., WACV 2023, arXiv 2210.12977).

Why: CLIP puts images and sentences in one space, so the CLIP image feature of a
frame inside a pseudo-event can stand in for the CLIP text feature of a sentence
describing that event. No words are generated; the grounding model's query side
takes one CLIP-space vector. At test time the same query side takes the CLIP text
embedding of the real sentence.

One piece lives here:

* :func:`select_query_vector` -- which CLIP vector of the event becomes its pseudo
  query. The paper picks a "dominant" frame feature of the proposal with a learned
  selection transformer; zeroground writes the query vectors to disk once
  (``PSEUDO.npy``), so it uses a fixed rule with the same intent: the *medoid*
  frame, the one most similar on average to all frames of the event (see
  docs/methods.md for the reasoning and the other rules offered).
The Lafite-style noise applied to these queries at *training* time lives with the
trainer (``zeroground.train.noise``, ``train.query_noise: lafite``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from zeroground.errors import ZerogroundError

SelectionRule = Literal["medoid", "mean", "center", "random"]
SELECTION_RULES: tuple[str, ...] = ("medoid", "mean", "center", "random")


class LFVMRError(ZerogroundError, ValueError):
    """Bad input for LFVMR pseudo queries."""


@dataclass
class LFVMRConfig:
    """LFVMR pseudo-query knobs (documented in docs/methods.md)."""

    selection: str = "medoid"   # one of SELECTION_RULES


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def select_query_vector(frames: np.ndarray, rule: str = "medoid",
                        rng: np.random.Generator | None = None) -> np.ndarray:
    """The pseudo query ``[D]`` (L2-normalised) of an event from its CLIP frame features ``[n, D]``.

    ``medoid``: the frame with the highest mean cosine similarity to the event's frames
    -- a real image feature (not an average that no image has), chosen because it
    represents the event best. ``mean``: normalised average. ``center``: the middle
    frame. ``random``: a uniformly drawn frame (needs ``rng``).
    """
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 2 or frames.shape[0] == 0:
        raise LFVMRError(f"event frames must be a non-empty [n, D] array, found shape {frames.shape}")
    if rule not in SELECTION_RULES:
        raise LFVMRError(f"unknown selection rule {rule!r}; choose one of {list(SELECTION_RULES)}")
    unit = _unit(frames)  # [n, D]
    if rule == "mean":
        chosen = unit.mean(0)
    elif rule == "center":
        chosen = unit[(frames.shape[0] - 1) // 2]
    elif rule == "random":
        if rng is None:
            raise LFVMRError("selection rule 'random' needs a random generator")
        chosen = unit[int(rng.integers(frames.shape[0]))]
    else:
        sim = unit @ unit.T  # [n, n]
        chosen = unit[int(sim.mean(1).argmax())]
    return _unit(chosen).astype(np.float32)
