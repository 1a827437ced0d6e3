"""CLI for the foundation: annotations, feature stores, scoring and no-training baselines.

Each command is a thin shell over a library function; expected bad input (a malformed file,
a missing video) is printed as one clear line and exits with code 2, without a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from zeroground.cli.app import CommandLineError, app

_METRIC_ORDER = ("R1@0.1", "R1@0.3", "R1@0.5", "R1@0.7", "R5@0.1", "R5@0.3", "R5@0.5", "R5@0.7", "mIoU")


def _baseline_names() -> str:
    from zeroground.eval.baselines import PREDICTORS  # numpy only: cheap enough for --help

    return ", ".join(PREDICTORS)


_BASELINE_NAMES = _baseline_names()



def print_metrics_table(rows: dict[str, dict[str, float]], title: str = "Grounding metrics (%)") -> None:
    """Rich table, one column per run and one row per metric (percent), so it fits a narrow terminal."""
    from rich.console import Console
    from rich.table import Table

    keys = [k for k in _METRIC_ORDER if any(k in m for m in rows.values())]
    table = Table(title=title)
    table.add_column("metric")
    for name in rows:
        table.add_column(name, justify="right")
    for k in keys:
        table.add_row(k, *[f"{100 * m[k]:.2f}" if k in m else "-" for m in rows.values()])
    Console().print(table)


_FORMAT_HELP = "Annotation format: auto (by extension/content), charades_sta, activitynet or psvl."
_DURATIONS_HELP = (
    "Charades-STA text only: video durations from a Charades CSV (id,...,length), "
    "a feature store (folder of .npy or .h5; duration = T / fps from its attrs)."
)
_OOR_HELP = (
    "Spans outside [0, duration]: error (default; ends up to 2 s late are kept and counted), "
    "clamp (clamp and count) or keep (keep and count)."
)


def _read(annotations: Path, fmt: str, durations: Optional[Path], out_of_range: str):
    from zeroground.data.annotations import read_annotations

    return read_annotations(annotations, format=fmt, durations=durations, out_of_range=out_of_range)  # type: ignore[arg-type]


@app.command("score")
def score(
    predictions: Path = typer.Argument(..., help="Predictions JSON Lines: {video, query, duration, gt, pred, scores?} per line, seconds."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write the metrics (default: metrics.json beside PREDICTIONS)."),
    annotations: Optional[Path] = typer.Option(None, "--annotations", "-a", help="Ground truth for --format qvhighlights (QVHighlights / lighthouse JSON lines, one or more windows per query)."),
    fmt: str = typer.Option("zeroground", "--format", help="zeroground (single-window R1/R5/mIoU from the predictions file's gt) or qvhighlights (multi-window R1@0.5/0.7, mAP, as Moment-DETR's standalone_eval)."),
) -> None:
    """Score a predictions file: R1/R5 at tIoU 0.1/0.3/0.5/0.7 and mIoU (R5 only with >= 5 predictions per query).

    Prints a table (percent) and writes metrics.json (fractions) next to the file. With
    --format qvhighlights --annotations GT: the multi-window metrics under the evaluator's
    names (MR-full-R1@0.5, MR-full-mAP, MR-short-mAP, ..., percent); predictions as
    pred_relevant_windows [[s, e, score], ...] by qid, or zeroground records in GT line order.
    """
    from zeroground.eval.predictions import metrics_path_for, score as score_file

    if fmt not in ("zeroground", "qvhighlights"):
        typer.secho(f"error: unknown --format {fmt!r}; choose zeroground or qvhighlights", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    if fmt == "qvhighlights":
        from zeroground.data.annotations import read_qvhighlights
        from zeroground.eval.qvhighlights import score_qvhighlights

        if annotations is None:
            from zeroground.eval.qvhighlights import QVHighlightsError

            raise QVHighlightsError("--format qvhighlights needs --annotations GT (JSON lines with relevant_windows)")
        metrics = score_qvhighlights(predictions, read_qvhighlights(annotations), out)
        typer.echo(f"{'metric':<20} {'value':>7}")
        for key, value in metrics.items():
            typer.echo(f"{key:<20} {value:>7.2f}")
        typer.echo(f"metrics written to {out or metrics_path_for(predictions)}")
        return
    metrics = score_file(predictions, out)
    print_metrics_table({predictions.name: metrics})
    typer.echo(f"metrics written to {out or metrics_path_for(predictions)}")


@app.command("baseline")
def baseline(
    name: str = typer.Argument(..., help=f"No-training predictor: {_BASELINE_NAMES}."),
    annotations: Path = typer.Option(..., "--annotations", "-a", help="Annotation file to predict for (and score against)."),
    out: Path = typer.Option(..., "--out", "-o", help="Predictions JSON Lines to write; metrics.json goes beside it."),
    top_k: int = typer.Option(1, "--top-k", min=1, help="Predictions per query (random, prior); 5 enables R5 metrics."),
    seed: int = typer.Option(0, "--seed", help="Random seed (random baseline)."),
    train: Optional[Path] = typer.Option(None, "--train", help="prior: take the span distribution from this annotation file instead of --annotations."),
    grid: float = typer.Option(0.05, "--grid", help="prior: grid step of the normalised (start, end) histogram."),
    span: tuple[float, float] = typer.Option((0.0, 0.3), "--span", help="fixed: the normalised span START END."),
    fmt: str = typer.Option("auto", "--format", help=_FORMAT_HELP),
    durations: Optional[Path] = typer.Option(None, "--durations", help=_DURATIONS_HELP),
    out_of_range: str = typer.Option("error", "--out-of-range", help=_OOR_HELP),
) -> None:
    """Run a no-training baseline and score it (see zeroground.eval.baselines for what each predicts).

    Example: zeroground baseline fixed --span 0 0.3 -a data/psvl/charades_sta_test_pos_original_simple_sent.json -o fixed.jsonl
    """
    from zeroground.eval.baselines import baseline as run_baseline
    from zeroground.eval.predictions import score as score_file, write_predictions

    moments = _read(annotations, fmt, durations, out_of_range)
    reference = _read(train, "auto", durations, out_of_range) if train is not None else None
    records = run_baseline(name, moments, top_k=top_k, seed=seed, train=reference, grid=grid, span=span)
    write_predictions(out, records)
    metrics = score_file(out)
    print_metrics_table({name: metrics}, title=f"{name} baseline, {len(records)} queries (%)")
    typer.echo(f"annotations {annotations}; predictions written to {out}, metrics beside it")


@app.command("convert")
def convert(
    src: Path = typer.Argument(..., help="Annotation file to read."),
    dst: Path = typer.Argument(..., help="Annotation file to write."),
    to: str = typer.Option("psvl", "--to", help="Output format: psvl, activitynet or charades_sta."),
    fmt: str = typer.Option("auto", "--format", help=_FORMAT_HELP),
    durations: Optional[Path] = typer.Option(None, "--durations", help=_DURATIONS_HELP),
    out_of_range: str = typer.Option("error", "--out-of-range", help=_OOR_HELP),
) -> None:
    """Convert annotations between Charades-STA text, ActivityNet Captions JSON and PSVL JSON."""
    from zeroground.data.annotations import write_annotations

    moments = _read(src, fmt, durations, out_of_range)
    write_annotations(moments, dst, format=to)
    typer.echo(f"{len(moments)} queries written to {dst} ({to})")


@app.command("inspect")
def inspect(
    path: Path = typer.Argument(..., help="An annotation file, or a feature store (folder of <vid>.npy or a .h5 file)."),
    fmt: str = typer.Option("auto", "--format", help=_FORMAT_HELP),
    durations: Optional[Path] = typer.Option(None, "--durations", help=_DURATIONS_HELP),
    annotations: Optional[Path] = typer.Option(None, "--annotations", "-a", help="Feature store: check that it covers every video of this annotation file."),
    out_of_range: str = typer.Option("error", "--out-of-range", help=_OOR_HELP),
) -> None:
    """Summarise annotations (queries, videos, span statistics) or a feature store (videos, dim, attrs)."""
    from rich.console import Console

    console = Console(soft_wrap=True)
    if path.is_dir() or path.suffix.lower() in (".h5", ".hdf5"):
        from zeroground.features.store import FeatureStore

        with FeatureStore.open(path) as store:
            console.print(f"[bold]{path}[/]: {len(store)} videos, dim {store.dim}, attrs {store.attrs}")
            store.check_shapes()
            lengths = [store.shape(v)[0] for v in store.video_ids]
            if lengths:
                console.print(f"time steps per video: min {min(lengths)}, median {sorted(lengths)[len(lengths) // 2]}, max {max(lengths)}")
            if annotations is not None:
                moments = _read(annotations, "auto", durations, out_of_range)
                store.require(m.video for m in moments)
                console.print(f"covers all {len({m.video for m in moments})} videos of {annotations}")
        return
    import numpy as np

    moments = _read(path, fmt, durations, out_of_range)
    spans = np.array([m.span_normalized for m in moments])  # [N, 2]
    lengths = spans[:, 1] - spans[:, 0]
    console.print(f"[bold]{path}[/]: {len(moments)} queries over {len({m.video for m in moments})} videos")
    console.print(
        f"normalised start mean {spans[:, 0].mean():.3f}, end mean {spans[:, 1].mean():.3f}, "
        f"length mean {lengths.mean():.3f} (median {np.median(lengths):.3f})"
    )
    with_sentence = sum(m.sentence is not None for m in moments)
    console.print(f"{with_sentence} with a sentence, {sum(m.tokens is not None for m in moments)} with tokens")
