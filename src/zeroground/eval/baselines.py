"""Baselines that need no training: the floor every accuracy claim is shown against.

Charades-STA is strongly biased (a constant span [0, 0.3]·duration reaches R1@0.5 = 30.65),
so a grounding result means little without these numbers on the same queries.

Each entry of :data:`PREDICTORS` maps a list of :class:`~zeroground.data.annotations.Moment`
to ranked *normalised* spans ``[N][K][2]``; :func:`baseline` turns them into
:class:`~zeroground.eval.predictions.PredictionRecord` s in seconds.

* ``random`` – ``top_k`` spans per query, each the sorted pair of two uniform draws in
  [0, 1] (``numpy.random.default_rng(seed)``).
* ``prior`` – the most common normalised span: every reference span (clamped to [0, 1]) is
  rounded to a grid of ``grid`` (0.05), and the grid pairs ``(s, e)`` are ranked by count
  (ties: smaller s, then smaller e). Top-k gives the k most common pairs. The reference
  spans are the evaluated annotations themselves unless ``train`` moments are given (the
  former peeks at the test labels: a bias *ceiling* for a constant span, not a fair method).
* ``whole`` – the whole video [0, 1] (one prediction).
* ``fixed`` – one constant span, ``span`` (default [0, 0.3]).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from zeroground.data.annotations import Moment
from zeroground.eval.predictions import PredictionRecord
from zeroground.errors import ZerogroundError


class BaselineError(ZerogroundError, ValueError):
    """A baseline that cannot run on these moments or options."""

Spans = list[list[tuple[float, float]]]  # [N][K] normalised (start, end)


def predict_random(moments: Sequence[Moment], top_k: int = 1, seed: int = 0, **_: object) -> Spans:
    """``top_k`` uniform random spans per query (sorted pairs of two U[0, 1] draws)."""
    rng = np.random.default_rng(seed)
    draws = np.sort(rng.uniform(0.0, 1.0, size=(len(moments), top_k, 2)), axis=-1)  # [N, K, 2]
    return [[(float(a), float(b)) for a, b in row] for row in draws]


def prior_spans(reference: Sequence[Moment], grid: float = 0.05, top_k: int = 1) -> list[tuple[float, float]]:
    """The ``top_k`` most common normalised spans of ``reference``, on a grid of ``grid``."""
    if not reference:
        raise BaselineError("the prior baseline needs at least one reference moment")
    if not (0 < grid <= 1):
        raise BaselineError(f"grid must be in (0, 1], got {grid}")
    n = round(1 / grid)
    counts: Counter[tuple[int, int]] = Counter()
    for m in reference:
        s, e = (min(max(x, 0.0), 1.0) for x in m.span_normalized)
        counts[(round(s * n), round(e * n))] += 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(i / n, j / n) for (i, j), _ in ranked[:top_k]]


def predict_prior(
    moments: Sequence[Moment],
    top_k: int = 1,
    train: Sequence[Moment] | None = None,
    grid: float = 0.05,
    **_: object,
) -> Spans:
    """The dataset's most common normalised span(s), from ``train`` or else from ``moments``."""
    spans = prior_spans(train if train is not None else moments, grid=grid, top_k=top_k)
    return [list(spans) for _ in moments]


def predict_whole(moments: Sequence[Moment], **_: object) -> Spans:
    """The whole video, one prediction per query."""
    return [[(0.0, 1.0)] for _ in moments]


def predict_fixed(moments: Sequence[Moment], span: Sequence[float] = (0.0, 0.3), **_: object) -> Spans:
    """One constant normalised span for every query (default [0, 0.3], Charades-STA's bias)."""
    s, e = float(span[0]), float(span[1])
    return [[(s, e)] for _ in moments]


#: Registry of no-training predictors: name -> function(moments, **options) -> normalised spans.
PREDICTORS: dict[str, Callable[..., Spans]] = {
    "random": predict_random,
    "prior": predict_prior,
    "whole": predict_whole,
    "fixed": predict_fixed,
}


def records_from_spans(moments: Sequence[Moment], spans: Spans) -> list[PredictionRecord]:
    """Pair moments with normalised predictions into records in seconds."""
    if len(moments) != len(spans):
        raise BaselineError(f"{len(moments)} moments but {len(spans)} prediction lists")
    out = []
    for m, row in zip(moments, spans):
        query = m.sentence if m.sentence is not None else (" ".join(m.tokens) if m.tokens else None)
        out.append(
            PredictionRecord(
                video=m.video,
                query=query,
                duration=m.duration,
                gt=[m.start, m.end],
                pred=[[s * m.duration, e * m.duration] for s, e in row],
            )
        )
    return out


def baseline(name: str, moments: Sequence[Moment], **options: object) -> list[PredictionRecord]:
    """Run the no-training predictor ``name`` (a key of :data:`PREDICTORS`) on ``moments``."""
    if name not in PREDICTORS:
        raise BaselineError(f"unknown baseline {name!r}; choose one of {sorted(PREDICTORS)}")
    return records_from_spans(moments, PREDICTORS[name](moments, **options))
