"""Latency of ``zeroground ground``: first query (encodes the video) vs later queries.

Measures, on a generated video, with a ViT-B/32-sized random CLIP (the text
tower's cost is that of the real model) and the tiny CLIP:

* ``first``: a fresh ``Grounder`` answering its first query on an unseen video
  (decode + vision tower + text + scoring; model loading excluded);
* ``second``: later queries (new sentences) on the same video in the same
  ``Grounder``: features come from the cache, so only the sentence is embedded
  and windows scored. Median over ``--repeats`` different sentences. Target
  < 100 ms on CPU;
* ``disk``: a new ``Grounder`` (new process state) answering on a video whose
  features are in the disk cache: content hash + cache read + text, model
  loading excluded;
* with ``--model-dir`` a trained model directory is used instead of the
  training-free scorer (``random-psvl``: a PSVL-sized CLIP-query model with
  random weights, same compute as a trained one).

    python benchmarks/ground_latency.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

QUERIES = [
    "a person opens the door",
    "someone takes a cup from the table",
    "the man sits down on the sofa",
    "a woman laughs while holding a phone",
    "person puts the book on the shelf",
    "the light turns on",
    "someone walks to the window",
    "a person eats a sandwich",
    "the door closes",
    "people stand up and leave",
]


def random_model_dir(folder: Path, encoder: Path) -> Path:
    """A PSVL-sized (default ModelConfig) CLIP-query model with random weights."""
    import torch

    from zeroground.features.clip import load_clip
    from zeroground.model import GroundingModel, ModelConfig, save_model_dir

    dim = load_clip(encoder).dim
    cfg = ModelConfig(query_encoder="clip", video_dim=dim, clip_dim=dim)
    torch.manual_seed(0)
    return save_model_dir(folder, GroundingModel(cfg), cfg, text_encoder=str(encoder))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--size", default="240x320")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--models", default="tiny,vitb32")
    ap.add_argument("--model-dir", default="training-free", help="a model dir, 'training-free' or 'random-psvl'")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).parent))
    from extract_throughput import make_video, make_vitb32_sized

    from zeroground.testing import make_tiny_clip
    from zeroground.ground.grounder import Grounder

    h, w = (int(x) for x in args.size.split("x"))
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        video = make_video(tmp / "movie.mp4", args.seconds, 30, (h, w), 60, 0)
        for name in args.models.split(","):
            enc = make_tiny_clip(tmp / "tiny") if name == "tiny" else make_vitb32_sized(tmp / "vitb32")
            cache = tmp / f"cache_{name}"
            model_dir = args.model_dir
            if model_dir == "random-psvl":
                model_dir = random_model_dir(tmp / f"model_{name}", enc)
            g = Grounder(model_dir, str(enc), cache_dir=cache)
            _ = g.clip  # load the model outside the timings
            t0 = time.perf_counter()
            g.ground(video, "a person opens the door")
            first = time.perf_counter() - t0
            second = []
            for i in range(args.repeats):
                q = QUERIES[i % len(QUERIES)] + f" {i}"  # new sentence each time: no text cache hit
                t0 = time.perf_counter()
                g.ground(video, q)
                second.append(time.perf_counter() - t0)
            g2 = Grounder(model_dir, str(enc), cache_dir=cache)
            _ = g2.clip
            t0 = time.perf_counter()
            g2.ground(video, "the door closes again")
            disk = time.perf_counter() - t0
            med = statistics.median(second)
            print(
                f"[{name}, model {args.model_dir}] {args.seconds:g} s video {w}x{h}, torch threads {torch.get_num_threads()}: "
                f"first query {first * 1000:.0f} ms; later queries median {med * 1000:.1f} ms "
                f"(min {min(second) * 1000:.1f}, max {max(second) * 1000:.1f}, n={len(second)}) "
                f"{'< 100 ms OK' if med < 0.1 else '>= 100 ms'}; new Grounder with disk cache {disk * 1000:.0f} ms",
                flush=True,
            )


if __name__ == "__main__":
    main()
