"""Search latency of a large library: one query end to end, and 20 concurrent API requests.

Builds a library of ``--videos`` synthetic videos of ``--frames`` frame vectors each
(512-d, ViT-B/32's space; default 10,000 x 100 = 1 M vectors) through the library's own
``add_features`` (so the build time and memory are the real index code's), with a
ViT-B/32-sized random CLIP as the text encoder (its text tower costs what the real one does).
Frames are drawn around 300 "concept" directions in runs, like real footage, so the IVF
cells mean something; each query is one concept's direction.

Measured in one run:

* build: features + flat index + FAISS (IVF-SQ8) seconds, peak RSS, files on disk;
* ``open``: ``Library.open`` (memory-maps the matrix, reads the FAISS file);
* one query end to end (embed + stage 1 + stage 2 on 30 candidates), median of 20 different
  queries, with FAISS (the default at this size) and with the exact matrix product;
* agreement: share of FAISS's top-10 videos in the exact top-10;
* 20 concurrent POST /api/search on a real uvicorn server: errors, p50 / p95.

    python benchmarks/search_latency.py [--videos 10000 --frames 100] [--out results/search_cpu2.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def synthetic_videos(n_videos: int, frames: int, dim: int, concepts: np.ndarray, seed: int = 0):
    """Yield (id, [frames, dim] unit vectors): runs of 5-30 frames near one concept each."""
    rng = np.random.default_rng(seed)
    for i in range(n_videos):
        out = np.empty((frames, dim), np.float32)
        t = 0
        while t < frames:
            run = int(rng.integers(5, 31))
            c = concepts[rng.integers(len(concepts))]
            seg = c + 0.9 * rng.standard_normal((min(run, frames - t), dim)).astype(np.float32) / np.sqrt(dim)
            out[t:t + len(seg)] = seg
            t += len(seg)
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        yield f"vid{i:05d}", out


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=10_000)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--concurrent", type=int, default=20)
    ap.add_argument("--workdir", type=Path, default=None, help="Where to build the library (default: a temp dir).")
    ap.add_argument("--out", type=Path, default=None, help="Write the figures as JSON here.")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(2)
    from extract_throughput import make_vitb32_sized

    from zeroground.library.index import Library, add_features
    from zeroground.library.search import Searcher

    tmp_ctx = tempfile.TemporaryDirectory() if args.workdir is None else None
    work = Path(tmp_ctx.name) if tmp_ctx else args.workdir
    work.mkdir(parents=True, exist_ok=True)
    enc = make_vitb32_sized(work / "vitb32")
    from zeroground.features.clip import load_clip

    clip = load_clip(str(enc))
    dim = clip.dim
    sentences = [f"a person {v} the {o}" for v in ("opens", "closes", "takes", "puts down", "holds")
                 for o in ("door", "cup", "book", "laptop", "phone", "box")][: max(args.queries, 1)]
    q_vecs = clip.encode_texts(sentences)  # [Q, D]: concepts include the queries' directions
    import faiss

    faiss.omp_set_num_threads(1)  # one probe list scan is ~5 ms; threads only contend with the others
    rng = np.random.default_rng(1)
    extra = rng.standard_normal((300 - len(q_vecs), dim)).astype(np.float32)
    concepts = np.concatenate([q_vecs, extra / np.linalg.norm(extra, axis=1, keepdims=True)])

    lib_dir = work / "lib"
    t0 = time.perf_counter()
    durations = {f"vid{i:05d}": float(args.frames) for i in range(args.videos)}  # 1 frame/s
    rep = add_features(lib_dir, synthetic_videos(args.videos, args.frames, dim, concepts), durations, str(enc))
    build_s = time.perf_counter() - t0
    build_rss = peak_rss_gb()
    disk = {p.name: round(p.stat().st_size / 1024**3, 3) for p in lib_dir.iterdir() if p.is_file()}
    print(f"build: {rep.frames} vectors of {args.videos} videos in {build_s:.1f} s (FAISS: {rep.faiss}); peak RSS {build_rss:.2f} GB; files GB {disk}")

    t = time.perf_counter()
    lib = Library.open(lib_dir)
    open_s = time.perf_counter() - t
    exact_lib = Library.open(lib_dir, load_faiss=False)
    fast, exact = Searcher(lib), Searcher(exact_lib)
    for s in (fast, exact):  # warm: model, page cache
        s.search("warm up the caches", 10)

    def median_ms(searcher) -> tuple[float, list]:
        times, tops = [], []
        for q in sentences[: args.queries]:
            t = time.perf_counter()
            res = searcher.search(q, 10)
            times.append(time.perf_counter() - t)
            tops.append([h.video for h in res.hits])
        return 1000 * statistics.median(times), tops

    fast_ms, fast_tops = median_ms(fast)
    exact_ms, exact_tops = median_ms(exact)
    agree = statistics.mean(len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(fast_tops, exact_tops))
    print(f"one query end to end: FAISS {fast_ms:.1f} ms, exact {exact_ms:.1f} ms (exact/FAISS {exact_ms / fast_ms:.1f}x); "
          f"top-10 agreement {agree:.2f}; open {open_s:.2f} s")

    # ---- 20 concurrent API requests on a real server
    import socket

    import httpx
    import uvicorn

    from zeroground.serve import ServeState, create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(ServeState(fast, work / "uploads"), ui=False),
                                           host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/api/search"
    lat: list[float] = []
    errors: list[str] = []
    barrier = threading.Barrier(args.concurrent)

    def one(i: int) -> None:
        with httpx.Client(timeout=120) as c:
            barrier.wait()
            t = time.perf_counter()
            # sentences not asked before: each request embeds its text, none is memoised
            r = c.post(url, json={"query": f"{sentences[i % len(sentences)]} in room {i}", "k": 10})
            lat.append(time.perf_counter() - t)
            if r.status_code != 200 or len(r.json().get("results", [])) != 10:
                errors.append(f"{r.status_code}: {r.text[:100]}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(args.concurrent)]
    t = time.perf_counter()
    for x in threads:
        x.start()
    for x in threads:
        x.join()
    wall = time.perf_counter() - t
    server.should_exit = True
    th.join(10)
    p50 = 1000 * float(np.percentile(lat, 50))
    p95 = 1000 * float(np.percentile(lat, 95))
    print(f"{args.concurrent} concurrent API searches: {len(errors)} errors, p50 {p50:.0f} ms, p95 {p95:.0f} ms, all done in {wall:.2f} s")
    result = {
        "videos": args.videos, "frames": rep.frames, "dim": dim, "faiss": rep.faiss,
        "build_s": round(build_s, 1), "build_peak_rss_gb": round(build_rss, 2), "files_gb": disk,
        "open_s": round(open_s, 2), "query_ms_faiss_median": round(fast_ms, 1), "query_ms_exact_median": round(exact_ms, 1),
        "exact_over_faiss": round(exact_ms / fast_ms, 2), "top10_agreement": round(agree, 3),
        "concurrent": args.concurrent, "concurrent_errors": len(errors), "concurrent_p50_ms": round(p50, 1),
        "concurrent_p95_ms": round(p95, 1), "concurrent_wall_s": round(wall, 2), "peak_rss_gb": round(peak_rss_gb(), 2),
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if errors:
        raise SystemExit(f"errors: {errors[:3]}")
    if tmp_ctx:
        tmp_ctx.cleanup()


if __name__ == "__main__":
    main()
