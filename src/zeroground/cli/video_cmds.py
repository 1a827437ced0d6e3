"""CLI for raw video: ``extract`` (CLIP features), ``clip-baseline`` (training-free), ``ground``.

Thin shells over :func:`zeroground.features.extract.extract`,
:func:`zeroground.ground.training_free.clip_training_free` and
:class:`zeroground.ground.grounder.Grounder`. Expected bad input prints one
line and exits with code 2; ``extract`` exits with code 3 when it skipped a
corrupt or unreadable video (the others were extracted).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, List, Optional

import typer

from zeroground.cli import app

EXIT_BAD_INPUT = 2
EXIT_SKIPPED = 3

_ENCODER_HELP = (
    "CLIP model: a local folder saved with save_pretrained, or a hub id already in the local "
    "Hugging Face cache (e.g. openai/clip-vit-base-patch32). Nothing is downloaded."
)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Expected errors (bad files, missing weights, mismatched models) -> one line, exit 2."""
    from zeroground.features.clip import ClipError
    from zeroground.features.extract import ExtractError
    from zeroground.features.store import FeatureError
    from zeroground.video.decode import VideoError

    try:
        yield
    except (ClipError, ExtractError, FeatureError, VideoError, ValueError, FileNotFoundError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


@app.command("extract")
def extract(
    inputs: List[Path] = typer.Argument(..., help="Video files and/or folders (searched recursively for video files)."),
    encoder: str = typer.Option(..., "--encoder", "-e", help=_ENCODER_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="HDF5 feature file to create or extend (.h5)."),
    fps: float = typer.Option(1.0, "--fps", help="Frames per second to sample (frame k = centre of [k/fps, (k+1)/fps))."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda."),
    batch_size: int = typer.Option(64, "--batch-size", help="Frames per forward pass of the vision tower."),
    workers: Optional[int] = typer.Option(None, "--decode-workers", help="Videos decoded at once (default: 1 per 4 CPU cores, at most 4)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    engine: str = typer.Option("local", "--engine", help="local (one process) or ray (Ray Data: decode tasks -> CLIP actor pool -> HDF5 shards; --out is then a folder)."),
    address: Optional[str] = typer.Option(None, "--address", help="--engine ray: Ray cluster address (default: start a local one on all cores)."),
    actors: Optional[int] = typer.Option(None, "--actors", help="--engine ray: CLIP actors (default: 1 per GPU, else CPUs/2)."),
    merge: bool = typer.Option(False, "--merge", help="--engine ray: also merge the shards into one HDF5 file (--out X.h5; shards kept in X.h5.shards/)."),
) -> None:
    """Extract L2-normalised CLIP frame features of videos into one HDF5 file (or, with --engine ray, a folder of shards).

    One dataset per video id (the file stem) with a 'duration' attribute; root
    attributes fps, encoder, dim. Resumable: rerun the same command after a kill
    and finished videos are skipped. Corrupt or unreadable videos are reported
    and skipped; the exit code is then 3.
    """
    from zeroground.features.extract import ExtractError, extract as run_extract

    with _user_errors():
        if engine == "ray":
            from zeroground.features.ray_extract import RaySettings, extract_ray

            report = extract_ray(inputs, encoder, out, fps=fps, device=device, batch_size=batch_size,
                                 settings=RaySettings(address=address, actors=actors), merge=merge,
                                 progress=not quiet)
        elif engine == "local":
            if address or actors or merge:
                raise ExtractError("--address, --actors and --merge belong to --engine ray")
            report = run_extract(
                inputs, encoder, out, fps=fps, device=device, batch_size=batch_size, progress=not quiet,
                decode_workers=workers,
            )
        else:
            raise ExtractError(f"unknown --engine {engine!r}; choose local or ray")
    rate = report.frames_per_second
    typer.echo(
        f"{out}: {len(report.extracted)} video(s) extracted ({report.frames} frames, {rate:.1f} frames/s), "
        f"{len(report.already_done)} already done, {len(report.failed)} skipped"
    )
    if report.failed:
        for path, reason in report.failed.items():
            typer.secho(f"skipped {path}: {reason}", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(EXIT_SKIPPED)


@app.command("clip-baseline")
def clip_baseline(
    features: Path = typer.Argument(..., help="CLIP frame features (.h5 from 'zeroground extract', or a folder of .npy)."),
    annotations: Path = typer.Argument(..., help="Annotations with sentences (charades_sta, activitynet or psvl format)."),
    encoder: str = typer.Option(..., "--encoder", "-e", help=_ENCODER_HELP + " Must be the one the features were made with."),
    out: Path = typer.Option(Path("predictions_clip.jsonl"), "--out", "-o", help="Predictions JSON Lines to write."),
    top_k: int = typer.Option(5, "--top-k", help="Spans per query."),
    fmt: str = typer.Option("auto", "--format", help="Annotation format: auto, charades_sta, activitynet or psvl."),
    durations: Optional[Path] = typer.Option(None, "--durations", help="Charades-STA text only: durations (CSV or feature store)."),
) -> None:
    """Training-free CLIP baseline: multi-scale windows scored by mean similarity inside minus outside.

    Frame-text cosine similarities, windows of 5%..90% of the video (stride 1/4
    length), score = mean inside - mean outside, temporal NMS at tIoU 0.5, top-k.
    Writes predictions and prints R1/R5 metrics.
    """
    from zeroground.data.annotations import read_annotations
    from zeroground.eval.metrics import evaluate_predictions
    from zeroground.eval.predictions import write_predictions
    from zeroground.features.store import FeatureStore
    from zeroground.ground.training_free import clip_training_free

    with _user_errors():
        moments = read_annotations(annotations, format=fmt, durations=durations)
        with FeatureStore.open(features) as store:
            records = clip_training_free(store, moments, encoder, top_k=top_k)
        write_predictions(out, records)
        metrics = evaluate_predictions(records)
    from zeroground.cli.data_cmds import print_metrics_table

    print_metrics_table({"clip-training-free": metrics})
    typer.echo(f"wrote {len(records)} predictions to {out}")


@app.command("ground")
def ground(
    video: Path = typer.Argument(..., help="A video file."),
    query: str = typer.Argument(..., help="The sentence describing the moment."),
    model: str = typer.Option("training-free", "--model", "-m", help="A zeroground model directory, or 'training-free'."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", help=_ENCODER_HELP + " Default: the one recorded in the model directory."),
    top_k: int = typer.Option(5, "--top-k", help="Spans to print. A trained model gives rank 1; ranks 2.. come from the training-free scorer."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Frames per second to encode the video at (default: the rate of the model's training features when it records one, else 1)."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Feature cache (default $ZEROGROUND_CACHE or ~/.cache/zeroground/features)."),
) -> None:
    """Find where QUERY happens in VIDEO: prints the top spans in seconds with scores.

    The video's features are cached by file content and encoder, so later
    queries on the same video skip decoding and the vision tower.
    """
    from zeroground.ground.grounder import Grounder

    with _user_errors():  # GroundError, TrainedModelError, TextError are ValueErrors
        grounder = Grounder(model, encoder, fps=fps, device=device, cache_dir=cache_dir)
        spans = grounder.ground(video, query, top_k=top_k)
    typer.echo(f"{video.name}: {query!r}")
    typer.echo(f"{'rank':>4}  {'start':>8}  {'end':>8}  {'score':>7}  source")
    for i, s in enumerate(spans, 1):
        typer.echo(f"{i:>4}  {s.start:8.2f}  {s.end:8.2f}  {s.score:7.4f}  {s.source}")
