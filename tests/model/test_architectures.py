"""Every registered architecture (zeroground.model.ARCHITECTURES) builds from its config, round-trips
through a model directory with identical outputs, and is chosen by ``architecture`` in a config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zeroground.config import ConfigError, convert
from zeroground.model import load_model_dir, predict_spans, save_model_dir
from zeroground.model.architectures import ARCHITECTURES, build_model
from zeroground.model.config import AnyModelConfig

SMALL = {
    "psvl": {"query_encoder": "clip", "video_dim": 16, "num_segments": 8, "hidden": 16, "video_gru_hidden": 8,
             "query_gru_hidden": 8, "embed_dim": 8, "fusion_layers": 1, "nonlocal_layers": 1, "nonlocal_heads": 2,
             "clip_dim": 12, "clip_query_len": 2},
    "lfvmr": {"video_dim": 16, "num_segments": 8, "hidden": 16, "video_gru_hidden": 8, "heads": 2, "clip_dim": 12,
              "selector_dim": 8, "selector_ff": 8},
}


def test_every_architecture_has_a_small_config_here():
    assert set(SMALL) == set(ARCHITECTURES)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_architecture_round_trips_through_a_model_directory(name, tmp_path):
    cfg = convert({"architecture": name, **SMALL[name]}, AnyModelConfig)
    assert type(cfg) is ARCHITECTURES[name].config and cfg.architecture == name
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    assert isinstance(model, ARCHITECTURES[name].network)
    rng = np.random.default_rng(0)
    videos = [rng.standard_normal((t, 16)).astype(np.float32) for t in (5, 8, 13)]
    queries = rng.standard_normal((3, 12)).astype(np.float32)
    before = predict_spans(model, cfg, None, videos, queries)
    loaded, cfg2, _ = load_model_dir(save_model_dir(tmp_path / name, model, cfg))
    after = predict_spans(loaded, cfg2, None, videos, queries)
    assert cfg2 == cfg
    np.testing.assert_array_equal(before.spans, after.spans)
    np.testing.assert_array_equal(before.attention, after.attention)
    # one video, many queries: encoded once, the same answers as one video per query
    shared = predict_spans(loaded, cfg2, None, videos[1], queries)
    each = predict_spans(loaded, cfg2, None, [videos[1]] * 3, queries)
    np.testing.assert_allclose(shared.spans, each.spans, atol=1e-6)


def test_an_unknown_architecture_is_named():
    with pytest.raises(ConfigError, match=r"architecture: unknown 'detr'; choose one of \['psvl', 'lfvmr'\]"):
        convert({"architecture": "detr"}, AnyModelConfig, where="model")
    with pytest.raises(ConfigError, match="selector_dim"):  # a field of the other architecture
        convert({"architecture": "psvl", "selector_dim": 8}, AnyModelConfig, where="model")


def test_train_help_lists_every_architecture():
    from typer.testing import CliRunner

    from zeroground.cli import app
    from zeroground.cli.model_cmds import _ARCHITECTURES

    assert _ARCHITECTURES.split(", ") == list(ARCHITECTURES)
    out = CliRunner().invoke(app, ["train", "--help"]).output
    for name in ARCHITECTURES:
        assert name in out
