"""CLI for the grounding model: import-psvl, train, evaluate, ensemble.

Thin shells over ``zeroground.model.import_psvl``, ``zeroground.train.loop.train`` and
``zeroground.train.evaluate.evaluate``. Expected bad input prints one line and exits 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from zeroground.cli.app import CommandLineError, app

_QUERY_ENCODERS = "tokens, clip"  # keys of zeroground.model.QUERY_ENCODERS (kept literal: --help stays instant)
_ARCHITECTURES = "psvl, lfvmr"  # keys of zeroground.model.architectures.ARCHITECTURES (model.architecture)



@app.command("import-psvl")
def import_psvl_cmd(
    checkpoint: Path = typer.Argument(..., help="Released PSVL checkpoint (.pth, a torch.save'd state dict)."),
    train_annotations: Path = typer.Option(..., "--train-annotations", help=(
        "The PSVL-JSON training file the checkpoint was trained on (e.g. "
        "data/psvl/charades_train_pseudo_supervision_TEP_PS.json); the vocabulary is rebuilt from it.")),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write."),
    video_dim: Optional[int] = typer.Option(None, "--video-dim", help="Expected feature dimension (checked)."),
) -> None:
    """Convert a released PSVL checkpoint into a zeroground model directory."""
    from zeroground.model import import_psvl

    path = import_psvl(checkpoint, train_annotations, out, video_dim=video_dim)
    typer.echo(f"wrote model directory {path}")


@app.command("import-lfvmr")
def import_lfvmr_cmd(
    checkpoint: Path = typer.Argument(..., help="Checkpoint of the seed LFVMR code (.pth, a torch.save'd state dict)."),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write."),
    video_dim: Optional[int] = typer.Option(None, "--video-dim", help="Video feature dimension you will use (checked)."),
    clip_dim: Optional[int] = typer.Option(None, "--clip-dim", help="Query vector dimension you will use (checked)."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help=(
        "CLIP model (path or hub id) that embeds test sentences, recorded in the model directory.")),
) -> None:
    """Convert a checkpoint of the seed LFVMR code into a zeroground model directory (architecture: lfvmr)."""
    from zeroground.model.model_dir import import_lfvmr

    path = import_lfvmr(checkpoint, out, video_dim=video_dim, clip_dim=clip_dim, text_encoder=encoder)
    typer.echo(f"wrote model directory {path}")


@app.command("train")
def train_cmd(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help=(
        "Run directory (config, checkpoint, metrics.csv, plot, model/).")),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help=(
        "Training config YAML (TrainConfig: model, readout, data, train). Not needed with --recipe or --resume.")),
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help=(
        "Instead of --config: a recipe's model, readout and training sections (see `zeroground recipes`); "
        "give the data with --set data.video_features=... --set data.train_annotations=...")),
    resume: Optional[Path] = typer.Option(None, "--resume", help=(
        "Continue the killed run in RUN_DIR from its last checkpoint (uses its saved config).")),
    set_: Optional[List[str]] = typer.Option(None, "--set", help=(
        "Override a config value, e.g. --set data.video_features=FEATS --set train.epochs=10 (repeatable).")),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ddp: bool = typer.Option(False, "--ddp", help=(
        "Data-parallel over the ranks of a torchrun launch: torchrun --nproc_per_node=N -m zeroground train --ddp ... "
        "(global batch train.batch_size split over ranks; rank 0 writes the files).")),
    sweep: Optional[Path] = typer.Option(None, "--sweep", help=(
        "YAML list of override mappings, one training each (OUT/<name>, default run<i>), e.g. "
        "[{name: lr1, train.lr: 0.001}, {name: seed2, train.seed: 2}]; results in OUT/sweep.json. Runs on Ray by default.")),
    engine: Optional[str] = typer.Option(None, "--engine", help=(
        "local (one training after another) or ray (ensemble/bagged members or sweep runs as Ray tasks, one process "
        "each with train.num_threads threads). Default: ray with --sweep, else local.")),
    address: Optional[str] = typer.Option(None, "--address", help="--engine ray: Ray cluster address (default: a local one on all cores)."),
) -> None:
    """Train a grounding model (model.architecture: psvl, lfvmr; psvl's query encoders: tokens, clip), or
    train.ensemble members of it. Final model → OUT/model."""
    from zeroground.config import parse_overrides
    from zeroground.train.config import load_train_config
    from zeroground.train.members import load_run_config, train_ensemble

    overrides = parse_overrides(set_)
    if resume is not None:
        if out is not None and out.resolve() != resume.resolve():
            raise CommandLineError(f"--out {out} and --resume {resume} name different run directories")
        out = resume
        if config is not None or overrides:
            typer.echo("note: --resume uses the resolved config saved in the run directory", err=True)
        cfg = load_run_config(resume)
    else:
        if (config is None) == (recipe is None) or out is None:
            raise CommandLineError("give --config CONFIG.yaml or --recipe NAME, and --out RUN_DIR "
                                   "(or --resume RUN_DIR to continue a run)")
        if recipe is not None:
            from zeroground.train.recipe import recipe_train_config

            cfg = recipe_train_config(recipe, overrides)
        else:
            cfg = load_train_config(config, overrides)
    engine = engine or ("ray" if sweep is not None else "local")
    if engine not in ("local", "ray"):
        raise CommandLineError(f"unknown --engine {engine!r}; choose local or ray")
    if address and engine != "ray":
        raise CommandLineError("--address belongs to --engine ray")
    if ddp and (sweep is not None or engine == "ray"):
        raise CommandLineError("--ddp trains one model over torchrun's ranks; it does not combine with --sweep or --engine ray")
    if sweep is not None:
        _train_sweep(cfg, sweep, out, engine=engine, address=address, resume=resume is not None)
        return
    ctx = None
    if ddp:
        from zeroground.train.ddp import init_distributed

        ctx = init_distributed()
    try:
        if ctx is None:
            model_dir = train_ensemble(cfg, out, resume=resume is not None, progress=not quiet and engine == "local",
                                       engine=engine, address=address)
        else:  # one model, data-parallel over the ranks
            from zeroground.train.loop import train

            model_dir = train(cfg, out, resume=resume is not None, progress=not quiet and ctx.is_main, distributed=ctx)
    finally:
        if ctx is not None:
            from zeroground.train.ddp import shutdown

            shutdown()
    if ctx is None or ctx.is_main:
        typer.echo(f"model written to {model_dir}")


def _train_sweep(cfg, sweep: Path, out: Path, *, engine: str, address: Optional[str], resume: bool) -> None:
    from zeroground.config import save_config, to_dict
    from zeroground.train.parallel import SWEEP_FILE, load_sweep, run_sweep

    items = load_sweep(sweep)
    if not resume:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")  # the sweep's base: `--resume OUT --sweep S.yaml` reads it back
    rows = run_sweep(to_dict(cfg), items, out, engine=engine, address=address, resume=resume)
    keys = [k for k in rows[0] if k not in ("name", "overrides", "model", "epoch", "seconds", "samples_per_s")]
    width = max(len(r["name"]) for r in rows)
    typer.echo(f"{'run':<{width}}  " + "  ".join(f"{k:>12}" for k in keys) + "  overrides")
    for r in rows:
        cells = "  ".join(f"{r[k]:>12.4f}" if isinstance(r.get(k), float) else f"{str(r.get(k, '')):>12}" for k in keys)
        typer.echo(f"{r['name']:<{width}}  {cells}  {r['overrides']}")
    typer.echo(f"wrote {out / SWEEP_FILE} ({len(rows)} runs)")


@app.command("evaluate")
def evaluate_cmd(
    model: Path = typer.Option(..., "--model", "-m", help="Model directory (import-psvl or train output)."),
    features: Path = typer.Option(..., "--features", "-f", help="Feature store: folder of <vid>.npy or .h5 file."),
    annotations: Path = typer.Option(..., "--annotations", "-a", help="Test annotations."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory for predictions.jsonl and metrics.json."),
    format: str = typer.Option("auto", "--format", help="Annotation format: auto, psvl, charades_sta, activitynet."),
    durations: Optional[Path] = typer.Option(None, "--durations", help="Video durations (Charades-STA text files)."),
    text_encoder: Optional[str] = typer.Option(None, "--encoder", "--text-encoder", help=(
        "CLIP-query models: the encoder (path or hub id) that embeds the sentences; "
        "default: the one recorded in the model directory.")),
    query_vectors: Optional[Path] = typer.Option(None, "--query-vectors", help=(
        "CLIP-query models: precomputed text vectors TEXT.npy [N, Dc], one row per query in annotation order "
        "(the seed LFVMR's test-time input), instead of --encoder.")),
    batch_size: int = typer.Option(256, "--batch-size"),
) -> None:
    """Ground every test query; write predictions (seconds) and metrics, print the table."""
    from zeroground.train.evaluate import evaluate

    if query_vectors is not None and text_encoder is not None:
        raise CommandLineError("give --query-vectors or --encoder, not both")
    metrics = evaluate(model, features, annotations, out, format=format, durations=durations,
                       text_encoder=text_encoder, batch_size=batch_size, progress=True, query_vectors=query_vectors)
    try:
        from zeroground.cli.data_cmds import print_metrics_table

        print_metrics_table({model.name: metrics})
    except ImportError:  # pragma: no cover
        for k, v in metrics.items():
            typer.echo(f"{k}\t{100 * v:.2f}")
    typer.echo(f"wrote {out / 'predictions.jsonl'} and {out / 'metrics.json'}")


@app.command("ensemble")
def ensemble_cmd(
    members: List[Path] = typer.Argument(..., help=(
        "Model directories of one recipe trained with different seeds or on different pseudo-label draws "
        "(same model config; token models may differ in vocabulary).")),
    out: Path = typer.Option(..., "--out", "-o", help="Ensemble model directory to write (replaced if it exists)."),
) -> None:
    """Combine trained models into one model directory whose outputs are their means."""
    from zeroground.model.ensemble import save_ensemble_dir

    path = save_ensemble_dir(out, members)
    typer.echo(f"wrote ensemble of {len(members)} models to {path}")
