"""Query-vector noise applied at every training step (one module, one registry).

Why: a CLIP-space query model is trained on *image* vectors and queried with *text*
vectors; perturbing each training query teaches it to accept vectors near, not
exactly at, image features, so a text embedding falls inside that neighbourhood more
often (the "modality gap").

``QUERY_NOISE`` maps the name of ``train.query_noise`` to its function; the level is
``train.query_noise_level``:

* ``none``    -- the pseudo query as written;
* ``lafite``  -- Lafite's relative noise (Zhou et al. 2022), ``normalize(h + xi·eps·‖h‖/‖eps‖)``:
  the zeroground LFVMR variant (``lfvmr_psvlnet``);
* ``gaussian`` -- the seed LFVMR's additive noise ``normalize(normalize(h) + level·eps)`` per element
  (SPEC §5; level 0.04 in its recipe), on one vector ``[N, D]`` or on candidates ``[N, K, D]``.
"""

from __future__ import annotations

from typing import Callable

import torch

from zeroground.errors import ZerogroundError


class QueryNoiseError(ZerogroundError, ValueError):
    """A query-noise setting that cannot be applied (negative level, wrong shape)."""


def lafite_noise(h: torch.Tensor, xi: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The perturbation ``xi * eps * ||h|| / ||eps||`` (``eps ~ N(0, I)``) for each row of ``h`` [N, D].

    Its norm is exactly ``xi * ||h||`` per row: the noise is relative to the vector,
    so xi means the same thing for any feature scale.
    """
    eps = torch.randn(h.shape, generator=generator, dtype=h.dtype, device=h.device)  # [N, D]
    scale = h.norm(dim=-1, keepdim=True) / eps.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return xi * eps * scale


def perturb_clip_vectors(h: torch.Tensor, xi: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Lafite noise then L2 re-normalisation: ``normalize(h + xi * eps * ||h|| / ||eps||)``.

    ``h`` is a float tensor ``[N, D]`` (CLIP-space queries); returns ``[N, D]`` unit rows.
    ``xi = 0`` returns the normalised input. Pass a ``torch.Generator`` for reproducible noise.
    """
    if xi < 0:
        raise QueryNoiseError(f"noise level xi must be >= 0, found {xi}")
    if h.dim() != 2:
        raise QueryNoiseError(f"expected CLIP vectors [N, D], found shape {tuple(h.shape)}")
    out = h if xi == 0 else h + lafite_noise(h, xi, generator)
    return torch.nn.functional.normalize(out, dim=-1)


def gaussian_noise(h: torch.Tensor, level: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The seed LFVMR's ``add_noise`` (:func:`zeroground.model.lfvmr.add_gaussian_noise`), its draw from ``generator``."""
    from zeroground.model.lfvmr import add_gaussian_noise

    if level < 0:
        raise QueryNoiseError(f"noise level must be >= 0, found {level}")
    return add_gaussian_noise(h, level, generator=generator)


NoiseHook = Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]
QUERY_NOISE: dict[str, NoiseHook | None] = {"none": None, "lafite": perturb_clip_vectors, "gaussian": gaussian_noise}
