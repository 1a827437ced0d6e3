"""Query noise (zeroground.train.noise): Lafite noise has the stated norm ratio, is reproducible, refuses bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zeroground.train.noise import QUERY_NOISE, QueryNoiseError, lafite_noise, perturb_clip_vectors


@pytest.mark.parametrize("xi", [0.0, 0.05, 0.3, 1.0])
def test_noise_norm_ratio_is_xi(xi: float) -> None:
    h = torch.randn(64, 512) * torch.rand(64, 1) * 5  # arbitrary norms
    noise = lafite_noise(h, xi, torch.Generator().manual_seed(0))
    ratio = noise.norm(dim=1) / h.norm(dim=1)
    torch.testing.assert_close(ratio, torch.full((64,), xi), atol=1e-5, rtol=1e-5)


def test_perturb_equals_normalised_h_plus_noise_and_is_unit() -> None:
    h = torch.randn(8, 32)
    xi = 0.2
    out = perturb_clip_vectors(h, xi, torch.Generator().manual_seed(7))
    noise = lafite_noise(h, xi, torch.Generator().manual_seed(7))
    expected = (h + noise) / (h + noise).norm(dim=1, keepdim=True)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(8))
    # distance to the clean direction is bounded by the noise level: angle <= asin(xi)
    cos = (out * torch.nn.functional.normalize(h, dim=1)).sum(1)
    assert (cos >= np.cos(np.arcsin(xi)) - 1e-6).all()


def test_perturb_zero_noise_and_reproducibility() -> None:
    h = torch.randn(4, 16)
    torch.testing.assert_close(perturb_clip_vectors(h, 0.0), torch.nn.functional.normalize(h, dim=1))
    a = perturb_clip_vectors(h, 0.1, torch.Generator().manual_seed(1))
    b = perturb_clip_vectors(h, 0.1, torch.Generator().manual_seed(1))
    c = perturb_clip_vectors(h, 0.1, torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_perturb_errors() -> None:
    with pytest.raises(QueryNoiseError, match="xi must be >= 0"):
        perturb_clip_vectors(torch.randn(2, 4), -0.1)
    with pytest.raises(QueryNoiseError, match=r"\[N, D\]"):
        perturb_clip_vectors(torch.randn(4), 0.1)



@pytest.mark.parametrize("name", sorted(QUERY_NOISE))
def test_every_registered_noise_keeps_shape_and_is_reproducible(name: str) -> None:
    hook = QUERY_NOISE[name]
    if hook is None:
        assert name == "none"
        return
    h = torch.nn.functional.normalize(torch.randn(6, 16), dim=1)
    a = hook(h, 0.1, torch.Generator().manual_seed(3))
    b = hook(h, 0.1, torch.Generator().manual_seed(3))
    assert a.shape == h.shape
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, h)
