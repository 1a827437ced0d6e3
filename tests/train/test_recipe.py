"""Recipes: every shipped recipe loads, lists only changes from the library defaults, gives a
reason for each, and has a one-line summary; unknown fields and names are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from zeroground.cli import app
from zeroground.config import ConfigError, to_dict
from zeroground.train.recipe import ENCODER, Recipe, changed, load_recipe, recipe_names, recipe_path, recipe_summary

REPO = Path(__file__).resolve().parents[2]
SHIPPED = recipe_names()


def _leaves(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def test_the_paper_and_demo_recipes_are_shipped():
    assert {"charades_psvl", "anet_psvl", "charades_lfvmr_psvlnet", "anet_lfvmr_psvlnet",
            "demo_psvl", "demo_lfvmr_psvlnet", "demo_supervised"} <= set(SHIPPED)
    assert (REPO / "configs" / "recipes" / "demo_psvl.yaml").resolve() == recipe_path("demo_psvl").resolve()


@pytest.mark.parametrize("name", SHIPPED)
def test_recipe_lists_only_changes_each_with_a_reason(name):
    path = recipe_path(name)
    loaded = load_recipe(name)
    assert recipe_summary(path), f"{path}: the first comment line is the recipe's summary"
    defaults = to_dict(Recipe())
    # the defaults of the recipe's architecture (naming a non-default architecture is a change)
    defaults["model"] = {**to_dict(type(loaded.recipe.model)()), "architecture": defaults["model"]["architecture"]}
    for dotted, value in _leaves(loaded.changes):
        node = defaults
        for key in dotted.split("."):
            node = node[key]
        # model.video_dim binds the recipe to a feature width (fit refuses another), so it may repeat the default
        assert value != node or value == ENCODER or dotted == "model.video_dim", \
            f"{name}: {dotted} is the library default ({node!r})"
    for line in path.read_text().splitlines():
        body = line.split("#")[0]
        if body.strip() and not body.rstrip().endswith(":") and body.strip() != "{}":
            assert "#" in line, f"{name}: no reason given for `{line.strip()}`"


def test_overrides_and_unknown_fields():
    loaded = load_recipe("demo_psvl", {"train.epochs": 3, "train": {"lr": 0.5}})
    assert loaded.recipe.train.epochs == 3 and loaded.recipe.train.lr == 0.5
    assert loaded.recipe.train.ensemble == 5  # the rest of the section is the recipe's
    assert changed(loaded.changes, "train.epochs") and not changed(loaded.changes, "model.video_dim")
    with pytest.raises(ConfigError, match="epochz"):
        load_recipe("demo_psvl", {"train.epochz": 3})
    with pytest.raises(ConfigError, match="unknown recipe 'nope'.*demo_psvl"):
        load_recipe("nope")


def test_a_recipe_file_outside_the_package(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("# my recipe\ntrain:\n  epochs: 7  # short\n")
    loaded = load_recipe(path)
    assert loaded.name == "mine" and loaded.recipe.train.epochs == 7
    path.write_text(yaml.safe_dump({"train": {"epochs": 7}, "modle": {}}))
    with pytest.raises(ConfigError, match="modle"):
        load_recipe(path)


def test_cli_lists_every_recipe_on_one_line():
    res = CliRunner().invoke(app, ["recipes"])
    assert res.exit_code == 0
    lines = res.output.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == SHIPPED
    assert all(recipe_summary(recipe_path(n)) in ln for n, ln in zip(SHIPPED, lines))


def test_train_config_from_a_recipe():
    from zeroground.train.recipe import recipe_train_config

    cfg = recipe_train_config("demo_lfvmr_psvlnet", {"data.video_features": "f.h5", "data.train_annotations": "a.json",
                                                     "train.epochs": 4})
    assert cfg.data.video_features == "f.h5" and cfg.train.epochs == 4 and cfg.train.ensemble == 3
    assert cfg.model.query_encoder == "clip" and cfg.train.query_noise == "lafite"
    with pytest.raises(ConfigError, match="train.word_vectors=CLIP"):
        recipe_train_config("demo_psvl", {"data.video_features": "f.h5"})
    with pytest.raises(ConfigError, match="vidoe_features"):
        recipe_train_config("demo_lfvmr_psvlnet", {"data.vidoe_features": "f.h5"})


# ---------------------------------------------------------------------------- shipped configs and paper specs

SHIPPED_CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def test_configs_are_shipped():
    assert {p.name for p in SHIPPED_CONFIGS} >= {"demo_default.yaml", "demo_quick.yaml"}


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_its_recipes_take_its_changes(path):
    from zeroground.demo.pipeline import load_demo_config

    setup = load_demo_config(path)
    for row, recipe in setup.recipes.items():
        loaded = load_recipe(recipe, setup.recipe_changes.get(row))
        for dotted, value in (setup.recipe_changes.get(row) or {}).items():
            node = to_dict(loaded.recipe)
            for key in dotted.split("."):
                node = node[key]
            assert node == value, (path.name, row, dotted)
    assert set(setup.recipe_changes) <= set(setup.recipes)


def test_the_default_demo_config_is_the_built_in_default():
    from zeroground.demo.pipeline import DemoSetup, default_config_path, load_demo_config

    assert load_demo_config(default_config_path()) == DemoSetup() == load_demo_config(None)


# PSVL's released Charades-STA model and training (../shared/psvl/SPEC.md §1-§4), written out
# here rather than read from the library defaults the recipes rest on.
PSVL_CHARADES_MODEL = {
    "query_encoder": "tokens", "video_dim": 1024, "num_segments": 128, "max_query_len": 10, "vocab_size": 506,
    "embed_dim": 300, "query_gru_hidden": 256, "video_gru_hidden": 256, "hidden": 256, "fusion_layers": 3,
    "fusion_heads": 1, "conv_kernel": 3, "nonlocal_layers": 2, "nonlocal_heads": 4, "nonlocal_dropout": 0.0,
    "dropout": 0.5,
}
PSVL_TRAINING = {
    "epochs": 500, "batch_size": 256, "drop_last": True, "lr": 4e-4, "betas": [0.9, 0.999], "weight_decay": 0.0,
    "localization_loss_weight": 1.0, "seed": 38, "query_noise": "none", "word_dropout": 0.0,
    "word_insertion": 0.0, "average_last_epochs": 0, "ensemble": 1, "bagging": False, "word_vectors": None,
}
CLIP_B32 = {"text_encoder": "openai/clip-vit-base-patch32"}  # embeds the test sentences of CLIP-query models
PSVL_PARAMETERS = 8_536_700  # SPEC: the 148 state-dict entries of the Charades checkpoint
# ActivityNet: the same grounder and recipe on 500-d C3D (PCA) features (PSVL's ActivityNet loader).
PAPER_MODELS = {
    "charades_psvl": PSVL_CHARADES_MODEL,
    "anet_psvl": {**PSVL_CHARADES_MODEL, "video_dim": 500},
    # zeroground's LFVMR variant: PSVL's network and training; the query is one 512-d CLIP ViT-B/32
    # vector (an image vector with Lafite noise in training, the sentence's text vector at test)
    "charades_lfvmr_psvlnet": {**PSVL_CHARADES_MODEL, "query_encoder": "clip", "clip_dim": 512},
    "anet_lfvmr_psvlnet": {**PSVL_CHARADES_MODEL, "video_dim": 500, "query_encoder": "clip", "clip_dim": 512},
}
# The seed LFVMR's Charades network (../shared/lfvmr/SPEC.md §4-§5: 4,273,283 parameters) and training (§7).
PAPER_MODELS["charades_lfvmr"] = {
    "architecture": "lfvmr", "video_dim": 1024, "clip_dim": 512, "num_segments": 128, "pe_positions": 256,
    "video_gru_hidden": 256, "hidden": 256, "heads": 4, "cross_layers": 3, "self_layers": 2, "dropout": 0.5,
    "pe_dropout": 0.1, "num_candidates": 9, "selector_dim": 128, "selector_layers": 2, "selector_heads": 2,
    "selector_ff": 128, "selector_dropout": 0.1,
}
PAPER_TRAINING = {
    "charades_lfvmr": {**PSVL_TRAINING, "query_noise": "gaussian", "query_noise_level": 0.04, **CLIP_B32},
    "charades_psvl": PSVL_TRAINING,
    "anet_psvl": PSVL_TRAINING,
    "charades_lfvmr_psvlnet": {**PSVL_TRAINING, "query_noise": "lafite", "query_noise_level": 0.1, **CLIP_B32},
    "anet_lfvmr_psvlnet": {**PSVL_TRAINING, "query_noise": "lafite", "query_noise_level": 0.1, **CLIP_B32},
}


def test_every_paper_recipe_is_checked():
    assert {n for n in SHIPPED if n.startswith(("charades_", "anet_"))} == set(PAPER_MODELS) == set(PAPER_TRAINING)


@pytest.mark.parametrize("name", sorted(PAPER_MODELS))
def test_paper_recipes_equal_their_specs(name):
    r = load_recipe(name).recipe
    model, train = to_dict(r.model), to_dict(r.train)
    assert {k: model[k] for k in PAPER_MODELS[name]} == PAPER_MODELS[name]
    assert {k: train[k] for k in PAPER_TRAINING[name]} == PAPER_TRAINING[name]
    assert to_dict(r.readout) == {"span": "regression", "attention_ratio": 1 / 3}  # both papers read the regressor
    assert r.pseudo.method == name.split("_", 1)[1]  # psvl, lfvmr (spans only), lfvmr_psvlnet (+ vectors)
    if name == "charades_lfvmr":
        from zeroground.model.lfvmr import LFVMRModel

        assert sum(p.numel() for p in LFVMRModel(r.model).parameters()) == 4_273_283


def test_the_psvl_paper_networks_have_the_checkpoint_s_size():
    from zeroground.model import GroundingModel

    def size(name):
        return sum(p.numel() for p in GroundingModel(load_recipe(name).recipe.model).parameters())

    assert size("charades_psvl") == PSVL_PARAMETERS
    # 500-d input: the video GRU's input weights (3 gates x 256 x 2 directions per input dim) and the
    # aggregation block after it (256 per input dim) shrink with it
    assert PSVL_PARAMETERS - size("anet_psvl") == (1024 - 500) * (3 * 256 * 2 + 256)
