"""CLI of the offline demo: ``zeroground demo`` and ``zeroground make-world``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from zeroground.cli.app import app


@app.command("demo")
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for videos, features, models and results."),
    config: Optional[Path] = typer.Option(
        None, "--config", help="Demo config YAML (default: the built-in one, same as configs/demo_default.yaml)."),
    set_: Optional[List[str]] = typer.Option(
        None, "--set", help=("Override one setup field, e.g. --set train_videos=60 or "
                             "--set recipe_changes.psvl.train.epochs=30 (repeatable).")),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    engine: str = typer.Option("auto", "--engine", help=(
        "How the trained rows' ensemble members train: ray (side by side as Ray tasks, one process each, "
        "on all cores), local (one after the other in this process), auto (ray when installed). Same table.")),
    address: Optional[str] = typer.Option(None, "--address", help="--engine ray: Ray cluster address (default: a local one on all cores)."),
) -> None:
    """Run the whole pipeline offline on a generated video world and print one results table.

    Renders unlabelled train videos and held-out test videos, extracts features with
    the shipped tiny CLIP, fits a model per trained row with its recipe (`zeroground fit`:
    PSVL, the LFVMR variant, a supervised upper bound), and compares them with
    the no-training baselines (random, prior, clip_training_free) and the published
    training-free rules (tfvtg without its LLM, tag) on held-out captions. The members of
    every trained row train side by side as Ray tasks (--engine local: one after the other).
    Writes OUT/results.json, OUT/timelines.png and OUT/runs/<method>/model.
    """
    from rich.console import Console

    from zeroground.config import parse_overrides
    from zeroground.demo.pipeline import load_demo_config, results_table, run_demo

    console = Console()
    cfg = load_demo_config(config, parse_overrides(set_))
    result = run_demo(out, cfg, progress=not quiet, engine=engine, address=address,
                      echo=lambda m: console.print(m, highlight=False, markup=False))  # "[fit psvl] ..." is no markup
    console.print(results_table(result.rows))
    console.print(f"results: {result.results_json}   figure: {result.figure}   "
                  f"total {result.seconds['total']:.0f} s")
    one = sorted((Path(out) / "videos").glob("test_*.mp4"))[:1]
    model = Path(out) / "runs" / "lfvmr_psvlnet" / "model"
    if one and model.is_dir():
        console.print(f"try: zeroground ground {one[0]} \"the person opens the door\" --model {model}")


@app.command("make-world")
def make_world_cmd(
    out: Path = typer.Argument(..., help="Output folder (videos/ and annotations/ are created in it)."),
    split: str = typer.Option("test", "--split", help="clip_train | train | test (test uses held-out captions)."),
    videos: int = typer.Option(10, "--videos", help="Number of videos to render."),
    seed: int = typer.Option(0, "--seed", help="World seed; video i depends only on (seed, split, i)."),
) -> None:
    """Render generated demo-world videos (mp4) with their true events and captions."""
    from zeroground.data.synthetic import make_world

    result = make_world(out, split, videos, seed=seed)
    n_events = sum(len(p.events) for p in result.plans)
    typer.echo(f"wrote {len(result.videos)} videos ({n_events} events) to {out / 'videos'}; "
               f"annotations: {result.annotations}")
