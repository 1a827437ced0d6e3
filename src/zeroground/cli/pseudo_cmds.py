"""CLI for pseudo-supervision: ``pseudo-label``, ``inspect-pseudo``, ``simplify``.

Thin shells over ``zeroground.pseudo``; expected bad input prints one line and exits
with code 2 (no traceback).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from zeroground.cli.app import CommandLineError, app

_METHODS = "psvl, lfvmr, lfvmr_psvlnet"  # keys of zeroground.pseudo.PSEUDO_LABELERS (kept literal so --help stays instant)



@app.command("pseudo-label")
def pseudo_label(
    method: Optional[str] = typer.Option(None, "--method", help=f"Pseudo-labelling method: {_METHODS} (default: the --config's)."),
    features: Path = typer.Option(..., "--features", help="Feature store of the unlabeled videos (folder of <vid>.npy or .h5)."),
    out: Path = typer.Option(..., "--out", help="Output PSVL-JSON (LFVMR also writes OUT.npy; both write OUT.config.yaml)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Pseudo-label YAML (PseudoLabelConfig); the options below override it."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Or: a recipe's pseudo section (see `zeroground recipes`), e.g. charades_lfvmr_psvlnet."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Feature frames per second, if the store does not record it."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default 0)."),
    detections: Optional[Path] = typer.Option(None, "--detections", help="PSVL nouns: detections JSON mapping video id to per-frame lists of (label, score) pairs."),
    clip: Optional[str] = typer.Option(None, "--clip", help="PSVL nouns by zero-shot CLIP tagging: encoder folder or hub id (features must be its image features)."),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="PSVL verbs: text file, one sentence per line (or saved verb stats .json)."),
    query_features: Optional[Path] = typer.Option(None, "--query-features", help="LFVMR: CLIP feature store for query vectors when --features is not CLIP."),
    num_clusters: Optional[int] = typer.Option(None, "--num-clusters", help="k-means clusters per video (default 5)."),
    min_len: Optional[float] = typer.Option(None, "--min-len", help="Shortest pseudo-event, fraction of the video (default 0.1)."),
    max_len: Optional[float] = typer.Option(None, "--max-len", help="Longest pseudo-event, fraction of the video (default 0.85)."),
    max_proposals: Optional[int] = typer.Option(None, "--max-proposals", help="Pseudo-events per video (default 8)."),
    queries_per_event: Optional[int] = typer.Option(None, "--queries-per-event", help="PSVL: verb draws per pseudo-event (default 3)."),
    selection: Optional[str] = typer.Option(None, "--selection", help="LFVMR query rule: medoid (default), mean, center, random."),
    verb_source: Optional[str] = typer.Option(None, "--verb-source", help="PSVL verbs: corpus (default, the paper) or clip (corpus candidates ranked by CLIP on the event's frames; needs --clip)."),
    keep_events: Optional[int] = typer.Option(None, "--keep-events", help="PSVL with --verb-source clip: keep this many pseudo-events per video, those with the most CLIP action evidence (default 0 = all, the paper)."),
    engine: str = typer.Option("local", "--engine", help="local (one process) or ray (the per-video work as Ray tasks; the same output)."),
    address: Optional[str] = typer.Option(None, "--address", help="--engine ray: Ray cluster address (default: start a local one on all cores)."),
) -> None:
    """Turn unlabeled videos into pseudo training pairs (PSVL bags of words or LFVMR CLIP vectors).

    Example: zeroground pseudo-label --method psvl --features feats.h5 --clip clip_dir
    --corpus captions.txt --out pseudo.json
    """
    from zeroground.config import load_config
    from zeroground.pseudo.label import PseudoLabelConfig, pseudo_label as run

    if config is not None and recipe is not None:
        raise CommandLineError("give --config or --recipe, not both")
    cfg = load_config(config, PseudoLabelConfig) if config else None
    if recipe is not None:
        from zeroground.train.recipe import load_recipe

        cfg = load_recipe(recipe).recipe.pseudo
    if method is None and cfg is None:
        raise CommandLineError(f"give --method ({_METHODS}), or a --config or --recipe that names one")
    resolved = run(method or cfg.method, features, out, config=cfg, progress=True, fps=fps, seed=seed,
                   detections=detections, clip=clip, corpus=corpus, query_features=query_features,
                   num_clusters=num_clusters, min_len=min_len, max_len=max_len,
                   max_proposals=max_proposals, queries_per_event=queries_per_event, selection=selection,
                   verb_source=verb_source, keep_events=keep_events, engine=engine, ray_address=address)
    typer.echo(f"wrote {out} ({resolved.method}); config: {Path(out).with_name(Path(out).stem + '.config.yaml')}")


@app.command("inspect-pseudo")
def inspect_pseudo(
    pseudo: Path = typer.Argument(..., help="Pseudo-label PSVL-JSON."),
    annotations: Optional[Path] = typer.Option(None, "--annotations", help="Real moments (any supported format with durations) to measure coverage against."),
    png: Optional[Path] = typer.Option(None, "--png", help="Histogram image (default PSEUDO.report.png)."),
    top: int = typer.Option(20, "--top", help="How many frequent pseudo tokens to list."),
) -> None:
    """Report proposal coverage of real moments (best tIoU per query: mean, >=0.3/0.5/0.7),
    span-length histograms (PNG) and the most frequent pseudo tokens.

    Coverage needs real moments on the same videos; otherwise only the length
    distributions are compared.
    """
    from zeroground.pseudo.report import inspect_pseudo as run

    report = run(pseudo, annotations, png=png, top_k_tokens=top)
    typer.echo(report.to_text())


@app.command("simplify")
def simplify(
    sentence: Optional[str] = typer.Argument(None, help="A query sentence."),
    file: Optional[Path] = typer.Option(None, "--file", help="Text file, one sentence per line."),
) -> None:
    """Print the lemmatised verbs and nouns of each query (spaCy), one query per line."""
    from zeroground.pseudo.text import simplify as run

    if (sentence is None) == (file is None):
        raise CommandLineError("give exactly one of SENTENCE or --file FILE")
    if file is not None:
        if not file.is_file():
            raise CommandLineError(f"{file}: file not found")
        sentences = [ln for ln in file.read_text().splitlines() if ln.strip()]
        if not sentences:
            raise CommandLineError(f"{file}: no sentences (expected one per line)")
    else:
        sentences = [sentence]
    for tokens in run(sentences):
        typer.echo(" ".join(tokens))
