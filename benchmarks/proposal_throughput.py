"""Throughput of ``propose_events`` (k-means temporal event proposals), in videos per minute.

Synthetic piecewise-constant features stand in for real ones (the cost depends on
T, D and k only). Prints the median seconds per video over repeats and videos/min
for 1 process and, with --workers N, for N processes.

    python benchmarks/proposal_throughput.py                    # Charades-like: T=100, D=1024
    python benchmarks/proposal_throughput.py --frames 200 --dim 500 --workers 2   # ActivityNet C3D-like
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from zeroground.pseudo.proposals import propose_events  # noqa: E402


def make_videos(n: int, frames: int, dim: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    videos = []
    for _ in range(n):
        cuts = np.sort(rng.choice(np.arange(1, frames), size=4, replace=False))
        bounds = np.concatenate([[0], cuts, [frames]])
        protos = rng.standard_normal((len(bounds) - 1, dim))
        x = np.concatenate([np.repeat(protos[k : k + 1], b - a, 0) for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))])
        videos.append((x + 0.5 * rng.standard_normal(x.shape)).astype(np.float32))
    return videos


def run_batch(videos: list[np.ndarray]) -> float:
    t0 = time.perf_counter()
    for i, v in enumerate(videos):
        propose_events(v, seed=i)
    return time.perf_counter() - t0


def _work(args: tuple[int, int, int, int]) -> float:
    n, frames, dim, seed = args
    return run_batch(make_videos(n, frames, dim, seed))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=200, help="videos per repeat")
    ap.add_argument("--frames", type=int, default=100, help="frames per video (T)")
    ap.add_argument("--dim", type=int, default=1024, help="feature dimension (D)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workers", type=int, default=1, help="also time N processes in parallel")
    args = ap.parse_args()

    videos = make_videos(args.videos, args.frames, args.dim)
    run_batch(videos[:5])  # warm-up
    times = [run_batch(videos) for _ in range(args.repeats)]
    med = statistics.median(times)
    per_video = med / args.videos
    print(f"T={args.frames} D={args.dim} videos/repeat={args.videos} repeats={args.repeats}")
    print(f"1 process : median {1000 * per_video:.2f} ms/video -> {60 / per_video:,.0f} videos/min")
    if args.workers > 1:
        from multiprocessing import Pool

        with Pool(args.workers) as pool:
            # each worker makes its own videos, then times only propose_events
            wall = max(pool.map(_work, [(args.videos, args.frames, args.dim, s) for s in range(args.workers)]))
        total = args.videos * args.workers
        print(f"{args.workers} processes: {total} videos in {wall:.2f} s -> {60 * total / wall:,.0f} videos/min "
              f"(ratio to 1 process: {(total / wall) / (1 / per_video):.2f}x)")


if __name__ == "__main__":
    main()
