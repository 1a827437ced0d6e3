"""Recipes: named YAML files listing only what they change from the library defaults.

A recipe decides everything about a ``fit`` run that is not the data: frames per second,
pseudo-labelling (``pseudo``: ``PseudoLabelConfig``), the model (``model``: ``ModelConfig``, or
``LFVMRConfig`` with ``architecture: lfvmr``), its span read-out (``readout``: ``Readout``)
and training (``train``: ``OptimConfig``, ensembles, bagging and initialisation included). The shipped
recipes live in ``zeroground/recipes/*.yaml`` (``configs/recipes`` in a checkout); the
first comment line of each is its one-line summary (``zeroground recipes``), and every
change carries its reason as a comment. A recipe may also be any YAML file of the same form.

The value ``encoder`` (:data:`ENCODER`) stands for the run's ``--encoder``: e.g.
``train.word_vectors: encoder`` starts the word embeddings at that encoder's text embeddings.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zeroground.config import ConfigError, apply_overrides, from_dict
from zeroground.model.config import AnyModelConfig, ModelConfig, Readout
from zeroground.pseudo.label import PseudoLabelConfig
from zeroground.train.config import OptimConfig

RECIPE_DIR = Path(__file__).resolve().parents[1] / "recipes"
ENCODER = "encoder"  # a recipe value meaning "the --encoder of this run"


@dataclass
class Recipe:
    """Everything a ``fit`` run decides besides its videos and encoder."""

    fps: float = 1.0  # frames per second decoded and encoded (zeroground.features.extract)
    pseudo: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)
    model: AnyModelConfig = field(default_factory=ModelConfig)
    readout: Readout = field(default_factory=Readout)
    train: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class LoadedRecipe:
    name: str
    recipe: Recipe
    changes: dict[str, Any]  # the mapping as written (plus overrides): what differs from the defaults
    source: Path | None


def recipe_names() -> list[str]:
    """Names of the shipped recipes, sorted."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def recipe_path(name_or_file: str | Path) -> Path:
    """A shipped recipe's file by name, or the file itself; a clear error otherwise."""
    path = Path(name_or_file)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"recipe file not found: {path}")
        return path
    shipped = RECIPE_DIR / f"{name_or_file}.yaml"
    if not shipped.is_file():
        raise ConfigError(f"unknown recipe {str(name_or_file)!r}; shipped recipes: {', '.join(recipe_names())} "
                          "(or give a YAML file)")
    return shipped


def recipe_summary(path: Path) -> str:
    """The first comment line of a recipe file (its one-line description)."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def load_recipe(name_or_file: str | Path, overrides: dict[str, Any] | None = None) -> LoadedRecipe:
    """Read a recipe (shipped name or YAML file) and apply dotted ``overrides`` on top.

    Unknown fields are errors naming the field and the allowed ones."""
    path = recipe_path(name_or_file)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of sections (fps, pseudo, model, readout, train)")
    changes = apply_overrides(copy.deepcopy(data), overrides)
    recipe = from_dict(Recipe, copy.deepcopy(changes), where=f"recipe {path.stem}")
    return LoadedRecipe(path.stem, recipe, changes, path)


def changed(changes: dict[str, Any], dotted: str) -> bool:
    """Whether the recipe itself sets ``dotted`` (e.g. ``"model.video_dim"``)."""
    node: Any = changes
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def recipe_train_config(name_or_file: str | Path, overrides: dict[str, Any] | None = None):
    """A ``TrainConfig`` from a recipe's model and training sections (``zeroground train --recipe``):
    ``data.*`` overrides fill the data section, the others change the recipe."""
    from zeroground.train.config import DataConfig, TrainConfig

    overrides = dict(overrides or {})
    data = {k[len("data."):]: v for k, v in overrides.items() if k.startswith("data.")}
    loaded = load_recipe(name_or_file, {k: v for k, v in overrides.items() if not k.startswith("data.")})
    r = loaded.recipe
    for field_name in ("word_vectors", "text_encoder"):
        if getattr(r.train, field_name) == ENCODER:
            raise ConfigError(f"recipe {loaded.name} sets train.{field_name} to the run's encoder; without `fit` "
                              f"there is none: --set train.{field_name}=CLIP_PATH_OR_HUB_ID")
    return TrainConfig(model=r.model, readout=r.readout, data=from_dict(DataConfig, apply_overrides({}, data), where="data"),
                       train=r.train)
