"""CLI: ``clip-baseline`` -- a training-free rule (windows, TFVTG, TAG) over a feature store."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from zeroground.cli.app import app
from zeroground.ground.training_free import SETTINGS, TRAINING_FREE_METHODS

_METHODS = ", ".join(TRAINING_FREE_METHODS)


@app.command("clip-baseline")
def clip_baseline(
    features_arg: Optional[Path] = typer.Argument(None, metavar="[FEATURES]", help="Same as --features."),
    annotations_arg: Optional[Path] = typer.Argument(None, metavar="[ANNOTATIONS]", help="Same as --annotations."),
    features: Optional[Path] = typer.Option(None, "--features", "-f", help="Frame [T, D] or token [T, K, D] features (.h5 or folder of .npy)."),
    annotations: Optional[Path] = typer.Option(None, "--annotations", "-a", help="Test annotations (charades_sta, activitynet, psvl or qvhighlights JSON lines)."),
    method: str = typer.Option("windows", "--method", help=f"Training-free rule: {_METHODS}."),
    setting: str = typer.Option("charades", "--setting", help=f"The rule's constants per data set: {', '.join(SETTINGS)}."),
    query_vectors: Optional[Path] = typer.Option(None, "--query-vectors", help="Text vectors .npy [Q, D], row i = query i of the annotations (e.g. BLIP-2 text features for token features)."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", help="CLIP model the frame features were made with (folder or cached hub id), to embed the queries."),
    out: Path = typer.Option(Path("clip_baseline"), "--out", "-o", help="Run folder (predictions.jsonl, metrics.json, config.json), or a .jsonl predictions file (metrics.json beside it)."),
    fmt: str = typer.Option("auto", "--format", help="Annotation format: auto, charades_sta, activitynet, psvl or qvhighlights."),
    durations: Optional[Path] = typer.Option(None, "--durations", help="Charades-STA text only: durations (CSV or feature store)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Training-free grounding on stored features, scored: windows (zeroground's rule), tfvtg or tag (no LLM).

    Writes the standard predictions file (top-1 first, up to the rule's own candidate
    count: windows 5, tfvtg 10, tag 12/17) and its metrics, and prints them.
    """
    import numpy as np

    from zeroground.cli.data_cmds import print_metrics_table
    from zeroground.data.annotations import read_annotations
    from zeroground.errors import ZerogroundError
    from zeroground.eval.predictions import score as score_file, write_predictions
    from zeroground.features.store import FeatureStore
    from zeroground.ground.training_free import predict_training_free
    from zeroground.io import atomic_write_json

    features = features or features_arg
    annotations = annotations or annotations_arg
    try:
        if features is None or annotations is None:
            raise ZerogroundError("give --features FEATURES and --annotations TEST_FILE")
        moments = read_annotations(annotations, format=fmt, durations=durations)
        qv = None
        if query_vectors is not None:
            try:
                qv = np.load(query_vectors, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ZerogroundError(f"{query_vectors}: not a readable .npy array ({exc})") from None
        with FeatureStore.open(features) as store:
            records = predict_training_free(
                store, moments, method, setting, query_vectors=qv, encoder=encoder, progress=not quiet
            )
        if out.suffix == ".jsonl":
            pred_path = out
        else:
            out.mkdir(parents=True, exist_ok=True)
            pred_path = out / "predictions.jsonl"
            atomic_write_json(out / "config.json", {
                "method": method, "setting": setting, "features": str(features), "annotations": str(annotations),
                "format": fmt, "query_vectors": None if query_vectors is None else str(query_vectors),
                "encoder": encoder,
            })
        write_predictions(pred_path, records)
        metrics = score_file(pred_path)
        multi = None
        if any(m.windows for m in moments):  # QVHighlights / lighthouse ground truth: their metrics too
            from zeroground.eval.qvhighlights import score_qvhighlights

            multi = score_qvhighlights(pred_path, moments, pred_path.with_name("metrics_qvhighlights.json"))
    except ZerogroundError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    print_metrics_table({f"{method} ({setting})": metrics})
    if multi:
        typer.echo("  ".join(f"{k} {v:.2f}" for k, v in multi.items()))
    typer.echo(f"wrote {len(records)} predictions to {pred_path}; metrics beside it")
