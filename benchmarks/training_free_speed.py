"""Queries/s of the vectorised TFVTG and TAG against straightforward per-window loops.

Same inputs for both: synthetic token features ``[N, 32, 256]`` (BLIP-2 Q-Former layout)
with a planted moment, at 3 frames/s (the references' rate) for a 30 s and a 10 min
video. Similarity is computed the same way in both; what differs is how the rules
walk the windows:

* loop TFVTG (``tests/ground/tf_loop_reference.py``): Python loops over window lengths
  and starts (a slice sum per window), the per-frame dynamic scan, NMS over a list.
* loop TAG (same file): the vectorised stages where the reference is vectorised too (masks,
  Box-Cox, pooling), and per-frame / per-row / per-pair Python loops where the reference
  loops: the dynamic scan, the k-means window mean, the proposal scores.

"tfvtg (rule on c)" times the rule alone on a precomputed similarity curve (the
end-to-end rows include the similarity of [N, 32, 256] tokens, the same code in both).
Both implementations' top-1 answers are checked equal. Medians over repeats, ratio =
loop time / vectorised time.

    python benchmarks/training_free_speed.py            # writes benchmarks/results/training_free_speed.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.ground.tf_loop_reference import tag_loop, tfvtg_loop  # noqa: E402
from zeroground.ground import tag as tag_mod  # noqa: E402
from zeroground.ground.tf_common import frame_similarity  # noqa: E402
from zeroground.ground.tfvtg import TFVTG_SETTINGS, tfvtg, tfvtg_from_similarity  # noqa: E402


def make_inputs(seconds: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    n = int(round(3 * seconds))
    rng = np.random.default_rng(seed)
    text = rng.standard_normal(256).astype(np.float32)
    text /= np.linalg.norm(text)
    v = rng.standard_normal((n, 32, 256)).astype(np.float32)
    v -= np.einsum("nkd,d->nk", v, text)[..., None] * text
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    t = np.arange(n) / n
    c = 0.18 + 0.12 * ((t > 0.4) & (t < 0.6)) + 0.02 * rng.standard_normal(n)  # planted curve
    v[:, 0] = c[:, None] * text + np.sqrt(1 - c[:, None] ** 2) * v[:, 0]
    return v.astype(np.float16), text


def _median_pair(fast, slow, repeats: int) -> tuple[float, float]:
    """Median seconds of each, the two interleaved so that load on a shared machine hits both alike."""
    tf, ts = [], []
    for _ in range(repeats):
        for fn, acc in ((fast, tf), (slow, ts)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    return statistics.median(tf), statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "training_free_speed.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for seconds, setting in ((30.0, "charades"), (600.0, "activitynet")):
        video, text = make_inputs(seconds)
        c, _ = frame_similarity(video, text)
        st = TFVTG_SETTINGS[setting]
        vec = tfvtg(video, text, seconds, setting)
        loop = tfvtg_loop(c, seconds, int(st["stride"]), st["max_stride_factor"])
        assert np.allclose(vec.top1, loop[0][:2], atol=1e-3), (vec.top1, loop[0])
        vt = tag_mod.tag(video, text, seconds, setting)
        lt = tag_loop(video, text, seconds, setting)
        assert np.allclose(vt.top1, lt, atol=1e-3), (vt.top1, lt)
        reps = args.repeats if seconds < 100 else max(3, args.repeats // 3)
        t_vec, t_loop = _median_pair(
            lambda: tfvtg(video, text, seconds, setting),
            lambda: tfvtg_loop(frame_similarity(video, text)[0], seconds, int(st["stride"]), st["max_stride_factor"]), reps)
        r_vec, r_loop = _median_pair(
            lambda: tfvtg_from_similarity(c, seconds, setting),
            lambda: tfvtg_loop(c, seconds, int(st["stride"]), st["max_stride_factor"]), reps)
        g_vec, g_loop = _median_pair(
            lambda: tag_mod.tag(video, text, seconds, setting), lambda: tag_loop(video, text, seconds, setting), reps)
        for method, tv, tl in (("tfvtg", t_vec, t_loop), ("tfvtg (rule on c)", r_vec, r_loop), ("tag", g_vec, g_loop)):
            rows.append({"video_s": seconds, "frames": len(c), "setting": setting, "method": method,
                         "vectorised_q_per_s": 1 / tv, "loop_q_per_s": 1 / tl, "ratio": tl / tv, "repeats": reps})
            print(f"{method:17s} {seconds:6.0f} s ({len(c):5d} frames, {setting:11s}): vectorised {1 / tv:9.2f} q/s, "
                  f"loop {1 / tl:8.2f} q/s, x{tl / tv:.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"threads": 1, "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
