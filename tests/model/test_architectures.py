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


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_the_read_out_is_the_model_directory_s_and_impl_the_loader_s(name, tmp_path):
    from zeroground.model import Readout, model_readout, read_model_config

    cfg = convert({"architecture": name, **SMALL[name]}, AnyModelConfig)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    assert model.readout == Readout()  # PSVL's and the seed's: the regression head
    model.readout = Readout(span="attention", attention_ratio=0.5)
    directory = save_model_dir(tmp_path / name, model, cfg, text_encoder="some/clip")
    _, meta = read_model_config(directory)
    assert meta["readout"] == {"span": "attention", "attention_ratio": 0.5} and meta["text_encoder"] == "some/clip"
    assert model_readout(meta) == model.readout
    rng = np.random.default_rng(0)
    videos = [rng.standard_normal((t, 16)).astype(np.float32) for t in (5, 8, 13)]
    queries = rng.standard_normal((3, 12)).astype(np.float32)
    fast, cfg2, _ = load_model_dir(directory)
    reference, _, _ = load_model_dir(directory, impl="reference")
    assert (fast.impl, reference.impl) == ("fast", "reference") and fast.readout == model.readout
    want = predict_spans(model, cfg, None, videos, queries)
    for loaded in (fast, reference):
        got = predict_spans(loaded, cfg2, None, videos, queries)
        np.testing.assert_allclose(got.spans, want.spans, atol=1e-6)
    with pytest.raises(ConfigError, match="unknown impl 'slow'"):
        build_model(cfg, impl="slow")
    with pytest.raises(ConfigError, match="span_readout"):  # no longer a model field
        convert({"architecture": name, **SMALL[name], "span_readout": "attention"}, AnyModelConfig)


# What the previous save_model_dir wrote under ``model:`` besides the architecture.
OLD_FIELDS = {
    "psvl": {"text_encoder": "some/clip", "word_vectors": "some/clip", "word_vector_prompt": "a photo of {}",
             "freeze_word_vectors": True, "impl": "fast", "span_readout": "attention", "attention_ratio": 0.5},
    "lfvmr": {"impl": "reference", "text_encoder": "some/clip"},
}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_a_model_directory_of_the_previous_layout_loads(name, tmp_path):
    """Before the model config held the architecture only, the read-out, text encoder, word-vector
    initialisation and implementation were ``model:`` fields; such directories load, with the
    read-out and text encoder moved into the metadata."""
    import yaml

    from zeroground.model import Readout, read_model_config

    cfg = convert({"architecture": name, **SMALL[name]}, AnyModelConfig)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    directory = save_model_dir(tmp_path / name, model, cfg, text_encoder="some/clip")
    written = yaml.safe_load((directory / "config.yaml").read_text())
    old_meta = {k: v for k, v in written["metadata"].items() if k != "readout"}
    old_meta["text_encoder"] = "some/clip"  # as the previous version wrote it: a copy of the model field
    (directory / "config.yaml").write_text(yaml.safe_dump(
        {"model": {**written["model"], **OLD_FIELDS[name]}, "metadata": old_meta}, sort_keys=False))
    got_cfg, meta = read_model_config(directory)
    assert got_cfg == cfg and meta["text_encoder"] == "some/clip"
    loaded, _, _ = load_model_dir(directory)
    want = Readout("attention", 0.5) if name == "psvl" else Readout()
    assert loaded.readout == want and loaded.impl == "fast"
    rng = np.random.default_rng(0)
    video, queries = rng.standard_normal((9, 16)).astype(np.float32), rng.standard_normal((2, 12)).astype(np.float32)
    model.readout = want
    np.testing.assert_allclose(predict_spans(loaded, cfg, None, video, queries).spans,
                               predict_spans(model, cfg, None, video, queries).spans, atol=1e-6)
