"""LFVMR language-free pseudo queries (Kim et al., WACV 2023, arXiv 2210.12977).

Why: CLIP puts images and sentences in one space, so the CLIP image feature of a
frame inside a pseudo-event can stand in for the CLIP text feature of a sentence
describing that event. No words are generated; the grounding model's query side
takes one CLIP-space vector. At test time the same query side takes the CLIP text
embedding of the real sentence.

Two pieces live here:

* :func:`select_query_vector` -- which CLIP vector of the event becomes its pseudo
  query. The paper picks a "dominant" frame feature of the proposal with a learned
  selection transformer; zeroground writes the query vectors to disk once
  (``PSEUDO.npy``), so it uses a fixed rule with the same intent: the *medoid*
  frame, the one most similar on average to all frames of the event (see
  docs/methods.md for the reasoning and the other rules offered).
* :func:`perturb_clip_vectors` -- Lafite-style feature noise applied at *training*
  time to every pseudo query, so the model learns to accept vectors near, not
  exactly at, image features; a text embedding then falls inside that neighbourhood
  more often (the "modality gap").
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
    # xi of the Lafite noise. Recorded with the pseudo-labels for reference only: noise is
    # applied by the trainer at every step (training config train.query_noise_xi).
    noise_level: float = 0.1


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


def lafite_noise(h, xi: float, generator=None):
    """The perturbation ``xi * eps * ||h|| / ||eps||`` (``eps ~ N(0, I)``) for each row of ``h`` [N, D].

    Its norm is exactly ``xi * ||h||`` per row: the noise is relative to the vector,
    so xi means the same thing for any feature scale.
    """
    import torch

    eps = torch.randn(h.shape, generator=generator, dtype=h.dtype, device=h.device)  # [N, D]
    scale = h.norm(dim=-1, keepdim=True) / eps.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return xi * eps * scale


def perturb_clip_vectors(h, xi: float, generator=None):
    """Lafite noise then L2 re-normalisation: ``normalize(h + xi * eps * ||h|| / ||eps||)``.

    ``h`` is a float tensor ``[N, D]`` (CLIP-space pseudo queries); returns ``[N, D]`` unit
    rows. ``xi = 0`` returns the normalised input. Pass a ``torch.Generator`` for
    reproducible noise.
    """
    import torch

    if xi < 0:
        raise LFVMRError(f"noise level xi must be >= 0, found {xi}")
    if h.dim() != 2:
        raise LFVMRError(f"expected CLIP vectors [N, D], found shape {tuple(h.shape)}")
    out = h if xi == 0 else h + lafite_noise(h, xi, generator)
    return torch.nn.functional.normalize(out, dim=-1)
