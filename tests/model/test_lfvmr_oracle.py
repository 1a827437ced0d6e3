"""The seed's LFVMR network against the reference run (../shared/lfvmr/oracle; slice in tests/data/lfvmr)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import SHARED_DIR
from zeroground.model.lfvmr import LFVMRConfig, LFVMRModel, add_gaussian_noise, lfvmr_config_from_state_dict
from zeroground.model.psvl import grounding_loss

SLICE = Path(__file__).resolve().parents[1] / "data" / "lfvmr"
ORACLE = SHARED_DIR / "lfvmr" / "oracle"


def _model(impl: str = "fast") -> LFVMRModel:
    state = torch.load(SLICE / "lfvmr_reference_checkpoint.pth", map_location="cpu")
    model = LFVMRModel(lfvmr_config_from_state_dict(state), impl=impl)
    model.load_state_dict(state, strict=True)
    return model.eval()


def test_state_dict_names_and_shapes_are_the_references():
    model = LFVMRModel(LFVMRConfig())
    ours = [f"{k} {tuple(v.shape)}" for k, v in model.state_dict().items()]
    keys = ORACLE / "state_dict_keys.txt"
    if keys.is_file():
        want = [" ".join(line.split()[:-1]) for line in keys.read_text().splitlines() if line.strip()]
        assert sorted(ours) == sorted(want)
    assert len(ours) == 70


@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("source", ["slice", "shared"])
def test_eval_batch_reproduces_the_reference(impl, source):
    path = SLICE / "one_batch_2.npz" if source == "slice" else ORACLE / "one_batch_8.npz"
    if not path.is_file():
        pytest.skip(f"{path} is absent (../shared not beside the repo)")
    d = np.load(path)
    text = torch.from_numpy(d["clip_text_feat"].copy())
    with torch.no_grad():
        out = _model(impl)(torch.from_numpy(d["video_feats"]), torch.from_numpy(d["video_masks"]), text)
    np.testing.assert_allclose(out["timestamps"].numpy(), d["timestamps"], atol=1e-5)
    np.testing.assert_allclose(out["attention_weights"].numpy(), d["attention_weights"], atol=1e-5)
    np.testing.assert_array_equal(text.numpy(), d["clip_text_feat"])  # the caller's tensor is not changed


def test_selector_and_noise_reproduce_the_reference():
    s = np.load(SLICE / "selector_batch.npz")
    noised = add_gaussian_noise(torch.from_numpy(s["clip_vid_feats"]), 0.04, noise=torch.from_numpy(s["noise"]))
    np.testing.assert_allclose(noised.numpy(), s["noised_clip_vid_feats"], atol=1e-6)
    selector = _model().query_encoder.selector
    with torch.no_grad():
        logits = selector(noised)
        chosen, one_hot = selector.select(noised)
    np.testing.assert_allclose(logits.numpy(), s["selector_logits"], atol=1e-5)
    np.testing.assert_array_equal(one_hot.argmax(1).numpy(), s["selected_index"])
    np.testing.assert_allclose(chosen.numpy(), s["selected_feats"], atol=1e-6)


def test_loss_terms_reproduce_the_reference():
    path = ORACLE / "loss_batch.npz"
    if not path.is_file():
        pytest.skip(f"{path} is absent (../shared not beside the repo)")
    d = np.load(path)
    with torch.no_grad():
        out = _model()(torch.from_numpy(d["video_feats"]), torch.from_numpy(d["video_masks"]), torch.from_numpy(d["query"]))
        loss = grounding_loss(out, torch.from_numpy(d["grounding_start_pos"]), torch.from_numpy(d["grounding_end_pos"]),
                              torch.from_numpy(d["attention_masks"]))
    for ours, ref in (("localization_loss", "localization_loss"), ("attention_loss", "attention_loss"), ("loss", "total_loss")):
        assert float(loss[ours]) == pytest.approx(float(d[ref]), rel=1e-5)


@pytest.mark.parametrize("video_dim", [512, 64])
def test_runs_on_other_video_feature_sizes(video_dim):
    torch.manual_seed(0)
    model = LFVMRModel(LFVMRConfig(video_dim=video_dim)).eval()
    assert model.pos_embd.pe.shape == (256, 1, video_dim)
    mask = torch.zeros(3, 128, dtype=torch.bool)
    mask[:, :40] = True
    out = model(torch.randn(3, 128, video_dim), mask, torch.randn(3, 512))
    assert out["timestamps"].shape == (3, 2) and torch.all(out["timestamps"] >= 0)
    assert torch.allclose(out["attention_weights"][:, 40:], torch.zeros(3, 88))
    with pytest.raises(ValueError, match="even"):
        LFVMRConfig(video_dim=63)
