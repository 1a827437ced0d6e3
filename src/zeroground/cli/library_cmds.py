"""CLI of the video library: ``index`` (build / extend) and ``search`` (moments across it)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from zeroground.cli.app import app

EXIT_SKIPPED = 3


@app.command("index")
def index(
    inputs: List[Path] = typer.Argument(None, help="Video files and/or folders to add (none: just rebuild the index)."),
    out: Path = typer.Option(..., "--out", "-o", help="Library folder to create or extend."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", help="CLIP folder or cached hub id (required for a new library; an existing one keeps its own)."),
    fps: float = typer.Option(1.0, "--fps", help="Frames per second to embed."),
    device: str = typer.Option("cpu", "--device", help="torch device."),
    batch_size: int = typer.Option(64, "--batch-size", help="Frames per forward pass."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Index videos into a searchable library (resumable; rerun to add more videos)."""
    from zeroground.library.index import index_videos

    rep = index_videos(inputs or [], out, encoder, fps=fps, device=device, batch_size=batch_size, progress=not quiet)
    typer.echo(f"{out}: {len(rep.added)} video(s) added, {len(rep.already)} already indexed, {len(rep.failed)} skipped; "
               f"{rep.frames} frame vectors{' (+ FAISS index)' if rep.faiss else ''}, {rep.seconds:.1f} s")
    if rep.failed:
        for path, reason in rep.failed.items():
            typer.secho(f"skipped {path}: {reason}", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(EXIT_SKIPPED)


@app.command("search")
def search(
    library: Path = typer.Argument(..., help="Library folder (from `zeroground index`)."),
    query: str = typer.Argument(..., help="The sentence describing the moment."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="A zeroground model directory (default: the training-free rule)."),
    k: int = typer.Option(10, "-k", "--top-k", help="Moments to print."),
    per_video: int = typer.Option(1, "--per-video", help="Moments kept per video."),
    localizer: str = typer.Option("windows", "--localizer", help="Training-free rule of stage 2 without --model (see zeroground.library.LOCALIZERS)."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", help="Where the library's encoder is now, if it moved."),
) -> None:
    """Find the best moments for QUERY across every video of LIBRARY."""
    from zeroground.library.search import Searcher

    searcher = Searcher(library, model, encoder=encoder, localizer=localizer)
    res = searcher.search(query, k, per_video=per_video)
    if res.note:
        typer.secho(f"note: {res.note}", fg=typer.colors.YELLOW, err=True)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{query!r} in {library} ({len(searcher.library)} videos, {res.candidates} candidates)")
    for col in ("rank", "video", "start", "end", "score", "source"):
        table.add_column(col, justify="right" if col in ("rank", "start", "end", "score") else "left")
    for i, h in enumerate(res.hits, 1):
        table.add_row(str(i), h.video, f"{h.start:.2f}", f"{h.end:.2f}", f"{h.score:.4f}", h.source)
    Console(width=120).print(table)
