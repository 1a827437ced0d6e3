"""CLI for raw video: ``extract`` (CLIP features), ``ground`` (``clip-baseline`` lives in training_free_cmds).

Thin shells over :func:`zeroground.features.extract.extract`,
:func:`zeroground.ground.training_free.clip_training_free` and
:class:`zeroground.ground.grounder.Grounder`. Expected bad input prints one
line and exits with code 2; ``extract`` exits with code 3 when it skipped a
corrupt or unreadable video (the others were extracted).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from zeroground.cli.app import CommandLineError, app

EXIT_BAD_INPUT = 2
EXIT_SKIPPED = 3

_ENCODER_HELP = (
    "Dual encoder (CLIP, SigLIP, SigLIP 2): a folder saved with save_pretrained, or a hub id "
    "(e.g. openai/clip-vit-base-patch32, google/siglip-base-patch16-224; ID@REVISION pins a revision), "
    "downloaded into the Hugging Face cache on first use; HF_HUB_OFFLINE=1 uses the cache only."
)
_DEVICE_HELP = "torch device: auto (CUDA when present), cpu, cuda, cuda:1, ..."



@app.command("extract")
def extract(
    inputs: List[Path] = typer.Argument(..., help="Video files and/or folders (searched recursively for video files)."),
    encoder: str = typer.Option(..., "--encoder", "-e", help=_ENCODER_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="HDF5 feature file to create or extend (.h5)."),
    fps: float = typer.Option(1.0, "--fps", help="Frames per second to sample (frame k = centre of [k/fps, (k+1)/fps))."),
    device: str = typer.Option("auto", "--device", help=_DEVICE_HELP),
    dtype: str = typer.Option("float32", "--dtype", help="Vision tower precision: float32, float16 or bfloat16 (features are stored as float32)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Frames per forward pass of the vision tower."),
    workers: Optional[int] = typer.Option(None, "--decode-workers", help="Videos decoded at once (default: 1 per 4 CPU cores, at most 4)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    engine: str = typer.Option("local", "--engine", help="local (one process) or ray (Ray Data: decode tasks -> CLIP actor pool -> HDF5 shards; --out is then a folder)."),
    address: Optional[str] = typer.Option(None, "--address", help="--engine ray: Ray cluster address (default: start a local one on all cores)."),
    actors: Optional[int] = typer.Option(None, "--actors", help="--engine ray: CLIP actors (default: 1 per GPU, else CPUs/2)."),
    merge: bool = typer.Option(False, "--merge", help="--engine ray: also merge the shards into one HDF5 file (--out X.h5; shards kept in X.h5.shards/)."),
    allow_truncated: bool = typer.Option(False, "--allow-truncated", help="Keep a video whose decoding stops before its declared end (cut, damaged, a duration that lies): features up to that point, with its real duration. Default: report and skip it."),
) -> None:
    """Extract L2-normalised frame features (CLIP, SigLIP, SigLIP 2) of videos into one HDF5 file (or, with --engine ray, a folder of shards).

    One dataset per video id (the file stem) with a 'duration' attribute; root
    attributes fps, encoder, dim. Resumable: rerun the same command after a kill
    and finished videos are skipped. Corrupt, unreadable or truncated videos
    (decoding stops before the declared end) are reported and skipped, no
    features written for them; the exit code is then 3.
    """
    from zeroground.features.extract import ExtractError, extract as run_extract

    if engine == "ray":
        from zeroground.features.ray_extract import RaySettings, extract_ray

        report = extract_ray(inputs, encoder, out, fps=fps, device=device, batch_size=batch_size,
                             settings=RaySettings(address=address, actors=actors), merge=merge,
                             progress=not quiet, allow_truncated=allow_truncated)
    elif engine == "local":
        if address or actors or merge:
            raise ExtractError("--address, --actors and --merge belong to --engine ray")
        report = run_extract(
            inputs, encoder, out, fps=fps, device=device, dtype=dtype, batch_size=batch_size, progress=not quiet,
            decode_workers=workers, allow_truncated=allow_truncated,
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


@app.command("ground")
def ground(
    video: Path = typer.Argument(..., help="A video file."),
    query: str = typer.Argument(..., help="The sentence describing the moment."),
    model: str = typer.Option("training-free", "--model", "-m", help="A zeroground model directory, or a training-free rule: 'training-free' (= training-free:windows), 'training-free:tfvtg', 'training-free:tag'."),
    setting: str = typer.Option("charades", "--setting", help="Training-free rules' constants: charades (short videos) or activitynet (long ones)."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", help=_ENCODER_HELP + " Default: the one recorded in the model directory."),
    top_k: int = typer.Option(5, "--top-k", help="Spans to print. A trained model gives rank 1; ranks 2.. come from the training-free scorer."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Frames per second to encode the video at (default: the rate of the model's training features when it records one; 3 for tfvtg/tag, as their authors; else 1)."),
    device: str = typer.Option("auto", "--device", help=_DEVICE_HELP),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Feature cache (default $ZEROGROUND_CACHE or ~/.cache/zeroground/features)."),
) -> None:
    """Find where QUERY happens in VIDEO: prints the top spans in seconds with scores.

    The video's features are cached by file content and encoder, so later
    queries on the same video skip decoding and the vision tower.
    """
    from zeroground.ground.grounder import Grounder

    grounder = Grounder(model, encoder, fps=fps, device=device, cache_dir=cache_dir, setting=setting)
    spans = grounder.ground(video, query, top_k=top_k)
    typer.echo(f"{video.name}: {query!r}")
    typer.echo(f"{'rank':>4}  {'start':>8}  {'end':>8}  {'score':>7}  source")
    for i, s in enumerate(spans, 1):
        typer.echo(f"{i:>4}  {s.start:8.2f}  {s.end:8.2f}  {s.score:7.4f}  {s.source}")
