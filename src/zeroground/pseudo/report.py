"""``inspect_pseudo``: how good is a pseudo-label file, before training on it?

Two questions a person asks of pseudo-labels: *do the proposals cover the real
moments?* (for each real query, the best tIoU among the proposals of its video) and
*do they look like real moments?* (normalised span lengths and start positions, as
histograms). Coverage needs ground truth on the same videos; span-length
distributions can be compared across different videos (e.g. PSVL's released
training pseudo-labels vs. the Charades-STA test moments).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from zeroground.errors import ZerogroundError


class PseudoReportError(ZerogroundError, ValueError):
    """A pseudo-label file that cannot be reported on."""

COVERAGE_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)


def best_tiou(proposals: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """For each gt span ``[G, 2]``, the best tIoU with any proposal ``[P, 2]`` -> ``[G]``.

    Same definition as SPEC section 5 (zero-length union -> 1 if they intersect).
    """
    p = np.asarray(proposals, dtype=np.float64).reshape(-1, 1, 2)  # [P, 1, 2]
    g = np.asarray(gt, dtype=np.float64).reshape(1, -1, 2)  # [1, G, 2]
    if p.shape[0] == 0:
        return np.zeros(g.shape[1])
    inter = np.clip(np.minimum(p[..., 1], g[..., 1]) - np.maximum(p[..., 0], g[..., 0]), 0, None)
    union = np.maximum(p[..., 1], g[..., 1]) - np.minimum(p[..., 0], g[..., 0])
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1), (inter > 0).astype(float))  # [P, G]
    return iou.max(0)


@dataclass
class PseudoReport:
    items: int
    videos: int
    distinct_spans: int
    spans_per_video: float
    span_length: dict[str, float]           # normalised, over distinct spans
    top_tokens: list[tuple[str, int]]
    gt_queries: int = 0
    gt_span_length: dict[str, float] = field(default_factory=dict)
    covered_queries: int = 0                # real queries whose video has proposals
    coverage: dict[str, float] = field(default_factory=dict)   # mean best tIoU, fraction >= thresholds
    png: str | None = None

    def to_text(self) -> str:
        lines = [
            f"pseudo-labels: {self.items} items over {self.videos} videos, "
            f"{self.distinct_spans} distinct spans ({self.spans_per_video:.2f} per video)",
            "proposal length (fraction of video): " + _fmt(self.span_length),
        ]
        if self.gt_queries:
            lines.append(f"real moments: {self.gt_queries} queries; length: " + _fmt(self.gt_span_length))
            if self.covered_queries:
                cov = self.coverage
                lines.append(
                    f"coverage on {self.covered_queries} queries with same-video proposals: "
                    f"mean best tIoU {cov['mean']:.3f}; "
                    + ", ".join(f">={t}: {100 * cov[f'>={t}']:.1f}%" for t in COVERAGE_THRESHOLDS))
            else:
                lines.append("coverage: no real query's video has pseudo-labels (different videos); "
                             "only the length distributions are comparable")
        if self.top_tokens:
            lines.append("most frequent pseudo tokens: "
                         + ", ".join(f"{t} ({c})" for t, c in self.top_tokens))
        if self.png:
            lines.append(f"histograms: {self.png}")
        return "\n".join(lines)


def _fmt(stats: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in stats.items())


def _length_stats(lengths: np.ndarray) -> dict[str, float]:
    if lengths.size == 0:
        return {}
    q = np.percentile(lengths, [10, 25, 50, 75, 90])
    return {"mean": float(lengths.mean()), "p10": float(q[0]), "p25": float(q[1]), "median": float(q[2]),
            "p75": float(q[3]), "p90": float(q[4])}


def _spans_by_video(moments: list[Any]) -> dict[str, np.ndarray]:
    by: dict[str, set] = defaultdict(set)
    for m in moments:
        s, e = m.span_normalized
        by[m.video].add((round(s, 9), round(e, 9)))
    return {v: np.array(sorted(spans)) for v, spans in by.items()}


def inspect_pseudo(pseudo_path: str | Path, annotations: str | Path | None = None, *,
                   png: str | Path | None = None, top_k_tokens: int = 20) -> PseudoReport:
    """Report on a PSVL-JSON pseudo-label file, optionally against ground-truth annotations.

    ``png`` (default ``<pseudo>.report.png``) receives the span-length and start-position
    histograms of proposals vs. real moments.
    """
    from zeroground.data.annotations import read_annotations, read_psvl_json

    pseudo_path = Path(pseudo_path)
    moments = read_psvl_json(pseudo_path, out_of_range="clamp")
    if not moments:
        raise PseudoReportError(f"{pseudo_path}: no pseudo-label items")
    spans = _spans_by_video(moments)
    all_spans = np.concatenate(list(spans.values()))  # [S, 2]
    tokens = Counter(t for m in moments for t in (m.tokens or []))
    report = PseudoReport(
        items=len(moments), videos=len(spans), distinct_spans=int(all_spans.shape[0]),
        spans_per_video=all_spans.shape[0] / len(spans),
        span_length=_length_stats(all_spans[:, 1] - all_spans[:, 0]),
        top_tokens=tokens.most_common(top_k_tokens))
    gt_spans = np.zeros((0, 2))
    if annotations is not None:
        gt = read_annotations(annotations, out_of_range="keep")
        gt_spans = np.array([m.span_normalized for m in gt], dtype=np.float64).reshape(-1, 2)
        gt_spans = np.clip(gt_spans, 0.0, 1.0)
        report.gt_queries = len(gt)
        report.gt_span_length = _length_stats(gt_spans[:, 1] - gt_spans[:, 0])
        best = [float(best_tiou(spans[m.video], np.clip(np.array([m.span_normalized]), 0, 1))[0])
                for m in gt if m.video in spans]
        report.covered_queries = len(best)
        if best:
            b = np.array(best)
            report.coverage = {"mean": float(b.mean()), **{f">={t}": float((b >= t).mean())
                                                            for t in COVERAGE_THRESHOLDS}}
    png = Path(png) if png is not None else pseudo_path.with_name(pseudo_path.stem + ".report.png")
    _plot(all_spans, gt_spans, png, title=pseudo_path.name)
    report.png = str(png)
    return report


def _plot(pseudo: np.ndarray, gt: np.ndarray, png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zeroground.io import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    bins = np.linspace(0, 1, 21)
    for ax, col, name in ((axes[0], None, "span length (fraction of video)"), (axes[1], 0, "start (fraction of video)")):
        vals_p = pseudo[:, 1] - pseudo[:, 0] if col is None else pseudo[:, col]
        ax.hist(vals_p, bins=bins, density=True, alpha=0.55, label=f"pseudo ({len(pseudo)} spans)")
        if len(gt):
            vals_g = gt[:, 1] - gt[:, 0] if col is None else gt[:, col]
            ax.hist(vals_g, bins=bins, density=True, alpha=0.55, label=f"real ({len(gt)} moments)")
        ax.set_xlabel(name)
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
