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
    with pytest.raises(ConfigError, match="model.word_vectors=CLIP"):
        recipe_train_config("demo_psvl", {"data.video_features": "f.h5"})
    with pytest.raises(ConfigError, match="vidoe_features"):
        recipe_train_config("demo_lfvmr_psvlnet", {"data.vidoe_features": "f.h5"})
