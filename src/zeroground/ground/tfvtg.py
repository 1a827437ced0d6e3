"""TFVTG without the LLM (Zheng et al., ECCV 2024; github.com/minghangz/TFVTG @ ed84709c).

From per-frame similarities ``c`` (best token, :func:`~.tf_common.frame_similarity`):
mask ``c > 0.2``; score every window of length ``S, 2S, ...`` (``S`` = the data set's
stride) by mean inside (over the full length) minus mean outside (over the
above-threshold frames only); NMS at IoU 0.3; each survivor's start moves to its
*dynamic start* (:func:`~.tf_common.dynamic_pass`). The no-LLM answer is the first
survivor. Step numbers below refer to ``/work/shared/training_free/SPEC.md`` §3.

Vectorised: all windows of all lengths are scored at once from cumulative sums, and
NMS stops once it has the requested number of survivors (the reference loops over
kernel sizes and windows in Python).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from zeroground.ground.tf_common import MASK_THRESHOLD, TrainingFreeError, dynamic_pass, frame_similarity, iou_vote

# TFVTG data_configs.py: dataset stride, max_stride_factor; localize(): NMS threshold, 10 proposals.
TFVTG_SETTINGS: dict[str, dict[str, float]] = {
    "charades": {"stride": 20, "max_stride_factor": 0.5},
    "activitynet": {"stride": 40, "max_stride_factor": 1.0},
}
NMS_IOU = np.float32(0.3)
NUM_PROPOSALS = 10
VOTE_GAMMA = 0.6  # llm_prompting.select_proposal's default (only for the optional vote read-out)


@dataclass
class TfvtgResult:
    spans: np.ndarray  # [P, 2] seconds, [dynamic start, end], best first (P <= 10, or 3 for the fallback)
    confidence: np.ndarray  # [P] static score / the first survivor's static score (sign not checked)
    static_start: np.ndarray  # [P] seconds, the window's own start before the dynamic refinement
    windows: np.ndarray = field(repr=False)  # [W, 2] frames [i, i+L) of windows kept for NMS, generation order
    static: np.ndarray = field(repr=False)  # [W] float32 static scores of those windows
    kept: np.ndarray = field(repr=False)  # [S] indices into windows of the NMS survivors, in rank order
    dynamic_start: np.ndarray = field(repr=False)  # [N] int64 D
    dynamic_score: np.ndarray = field(repr=False)  # [N] A
    kernel_sizes: list[int] = field(default_factory=list)
    num_windows_total: int = 0

    @property
    def top1(self) -> tuple[float, float]:
        return float(self.spans[0, 0]), float(self.spans[0, 1])

    def vote_top1(self, over: int = 3) -> tuple[float, float]:
        """The IoU vote over the first ``over`` entries (what the LLM path does without sub-queries)."""
        cand = np.concatenate([self.spans[:over], self.confidence[:over, None]], axis=1)
        order, _ = iou_vote(cand, VOTE_GAMMA)
        return float(cand[order[0], 0]), float(cand[order[0], 1])


def _strides(n: int, setting: dict[str, float]) -> tuple[int, list[int]]:
    stride = int(setting["stride"])
    eff = min(stride, n // 2)
    if eff < 1:
        raise TrainingFreeError(
            f"TFVTG needs at least 2 feature frames, got {n} (the reference fails with stride 0 here)"
        )
    max_stride = int(n * float(setting["max_stride_factor"]))
    return eff, list(range(eff, min(n + 1, max_stride + 1), eff))


def tfvtg_from_similarity(
    sim: np.ndarray, duration: float, setting: str = "charades", *, max_proposals: int | None = NUM_PROPOSALS
) -> TfvtgResult:
    """TFVTG on a similarity curve ``sim`` [N]; ``max_proposals=None`` runs NMS to the end."""
    if setting not in TFVTG_SETTINGS:
        raise TrainingFreeError(f"unknown TFVTG setting {setting!r}; known: {sorted(TFVTG_SETTINGS)}")
    c = np.asarray(sim, dtype=np.float32)
    n = c.shape[0]
    s_eff, lengths = _strides(n, TFVTG_SETTINGS[setting])
    mask = c > MASK_THRESHOLD  # [N]
    x = c * mask  # masked-out frames exactly 0
    dyn = dynamic_pass(x, mask, s_eff)

    # Step 4: every window [i, i+L) of every length, generation order (L ascending, i ascending).
    if lengths:
        lens = np.concatenate([np.full(n - L + 1, L) for L in lengths])  # [W]
        starts = np.concatenate([np.arange(n - L + 1) for L in lengths])  # [W]
    else:
        lens = starts = np.zeros(0, dtype=np.int64)
    num_total = int(lens.shape[0])
    # Float64 prefix sums of the f32 values: windows holding the same above-threshold
    # frames (zeros elsewhere) get bit-identical sums, so the reference's exact ties stay ties.
    csum = np.concatenate([[0.0], np.cumsum(x.astype(np.float64))])
    cnum = np.concatenate([[0], np.cumsum(mask.astype(np.int64))])
    inner_sum = csum[starts + lens] - csum[starts]
    inner_num = cnum[starts + lens] - cnum[starts]
    outer_num = cnum[-1] - inner_num
    # outer_num == 0 is 0/0 in exact arithmetic: dropped (the oracle's convention, SPEC §6.2).
    ok = outer_num > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        static64 = inner_sum / lens - (csum[-1] - inner_sum) / outer_num
    static = static64.astype(np.float32)
    ok &= static > -1000
    windows = np.stack([starts[ok], starts[ok] + lens[ok]], axis=1).astype(np.int64)  # [W', 2]
    static = static[ok]

    # Step 5: NMS on f32 normalised coordinates, ties in generation order.
    order = np.argsort(-static, kind="stable")
    lo = (windows[order, 0] / n).astype(np.float32)
    hi = (windows[order, 1] / n).astype(np.float32)
    alive = np.ones(order.shape[0], dtype=bool)
    kept: list[int] = []
    pos = 0
    limit = order.shape[0] if max_proposals is None else max_proposals
    while len(kept) < limit:
        nxt = np.flatnonzero(alive[pos:])
        if nxt.size == 0:
            break
        p = pos + int(nxt[0])
        kept.append(p)
        alive[p] = False
        rest = slice(p + 1, None)
        inter = np.maximum(np.float32(0), np.minimum(hi[rest], hi[p]) - np.maximum(lo[rest], lo[p]))
        union = np.maximum(hi[rest], hi[p]) - np.minimum(lo[rest], lo[p])
        alive[rest] &= ~(inter / union > NMS_IOU)
        pos = p + 1
    kept_idx = order[np.asarray(kept, dtype=np.int64)]

    t = np.float32(duration)
    if kept_idx.size == 0:  # Step 7: nothing survived (e.g. no frame above 0.2)
        spans = np.zeros((3, 2))
        conf = np.ones(3)
        static_start = np.zeros(3)
    else:
        top = kept_idx[:NUM_PROPOSALS] if max_proposals is None else kept_idx
        i0, i1 = windows[top, 0], windows[top, 1]
        dyn_start = dyn.start[i0] / n * float(duration)  # float64, as the reference
        end = (i1 / n).astype(np.float32) * t
        static_start = (i0 / n).astype(np.float32) * t
        spans = np.stack([dyn_start, end.astype(np.float64)], axis=1)
        conf = (static[top] / static[kept_idx[0]]).astype(np.float32)
    return TfvtgResult(
        spans=spans, confidence=np.asarray(conf, dtype=np.float64), static_start=np.asarray(static_start, np.float64),
        windows=windows, static=static, kept=kept_idx, dynamic_start=dyn.start, dynamic_score=dyn.score,
        kernel_sizes=lengths, num_windows_total=num_total,
    )


def tfvtg(
    video: np.ndarray, text: np.ndarray, duration: float, setting: str = "charades", *,
    max_proposals: int | None = NUM_PROPOSALS,
) -> TfvtgResult:
    """TFVTG (no LLM) on video features ``[N, D]`` or ``[N, K, D]`` and a text feature ``[D]``."""
    sim, _ = frame_similarity(video, text)
    return tfvtg_from_similarity(sim, duration, setting, max_proposals=max_proposals)
