"""``zeroground fit`` (unlabeled videos → model directory) and ``zeroground recipes``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from zeroground.cli.app import app


@app.command("fit")
def fit_cmd(
    videos: Optional[List[Path]] = typer.Argument(None, help="Video files or folders (searched recursively)."),
    recipe: str = typer.Option(..., "--recipe", "-r", help="A shipped recipe (see `zeroground recipes`) or a recipe YAML file."),
    encoder: str = typer.Option(..., "--encoder", "-e", help=(
        "CLIP model that encodes frames and sentences: a folder or a cached hub id "
        "(e.g. openai/clip-vit-base-patch32).")),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory; the model is written to OUT/model."),
    features: Optional[Path] = typer.Option(None, "--features", "-f", help=(
        "Start from this feature store (.h5 or folder of .npy) instead of the videos; "
        "VIDEOS, if given, then pick the store's videos to fit on.")),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help=(
        "Unpaired sentences, one per line, that PSVL recipes draw their verbs from.")),
    annotations: Optional[Path] = typer.Option(None, "--annotations", help=(
        "Train on these true spans instead of pseudo-labels (the supervised upper bound).")),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Change one recipe field, e.g. --set train.epochs=5 (repeatable)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    engine: str = typer.Option("local", "--engine", help=(
        "local (one process) or ray: extraction (Ray Data), pseudo-labels and member trainings as Ray tasks.")),
    address: Optional[str] = typer.Option(None, "--address", help="--engine ray: Ray cluster address (default: a local one on all cores)."),
) -> None:
    """Unlabeled videos → extract → pseudo-label → train (members, bagging) → ensemble → OUT/model.

    Each stage's output stays in OUT and is skipped when complete: after a kill, run the
    same command again and it resumes."""
    from zeroground.config import parse_overrides
    from zeroground.train.fit import fit

    result = fit(videos or [], recipe, encoder, out, features=features, corpus=corpus, annotations=annotations,
                 overrides=parse_overrides(set_), progress=not quiet, echo=typer.echo, engine=engine, address=address)
    typer.echo(f"model: {result.model}")
    typer.echo(f"try: zeroground ground VIDEO \"a sentence\" --model {result.model}")


@app.command("recipes")
def recipes_cmd() -> None:
    """List the shipped recipes, one line each (files in configs/recipes/)."""
    from zeroground.train.recipe import recipe_names, recipe_path, recipe_summary

    names = recipe_names()
    width = max(map(len, names), default=0)
    for name in names:
        typer.echo(f"{name:<{width}}  {recipe_summary(recipe_path(name))}")
