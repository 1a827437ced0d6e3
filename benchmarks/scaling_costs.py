"""Per-unit costs of the pipeline on this machine, and the cluster projection built from them.

Measures (medians over ``--repeats`` after a warm-up, all in this one process):

* **decode frames/s** -- ``zeroground.video.decode.iter_video_frames`` at 1 fps over
  generated 640×360 H.264 videos (30 fps, keyframe every 2 s), with and without the CLIP
  preprocessing (``preprocess_frames``, 224 px);
* **CLIP frames/s** -- the vision tower (``encode_pixels``, batches of 64) of the shipped
  tiny CLIP (``src/zeroground/assets/tiny_clip``) and of a ViT-B/32-sized ``CLIPModel`` with
  random weights (``CLIPConfig()`` defaults: the compute of openai/clip-vit-base-patch32);
* **pseudo-labels videos/s** -- ``pseudo_label`` LFVMR (512-d, 180 frames = 3 min at 1 fps)
  and PSVL with CLIP tagging (tiny CLIP's 64-d space, a 6-noun corpus), one process;
* **training samples/s** -- one Adam step of the default grounding model (fast path) on
  batches of ``--train-batch`` (128 segments × 512-d, 10 tokens).

Then prints (and writes with the figures to ``--out``) the projection for 10k / 100k / 1M
videos. The GPU rates in it are **assumptions** given on the command line (no GPU was lent
when the figures in docs/scaling.md were taken): ``--gpu-clip-fps`` (ViT-B/32 fp16 frames/s
per GPU) and ``--gpu-train-sps`` (training samples/s per GPU).

    python benchmarks/scaling_costs.py                 # ~3-5 minutes on 2 cores
    python benchmarks/scaling_costs.py --quick         # fewer repeats, smaller sets
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]


def median_rate(fn, units: float, repeats: int) -> tuple[float, list[float]]:
    """``units`` per second of ``fn()``: median over ``repeats`` timed calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return units / statistics.median(times), times


def bench_decode(tmp: Path, vitb32: Path, repeats: int, quick: bool) -> dict:
    from extract_throughput import make_video

    from zeroground.features.clip import load_clip
    from zeroground.features.clip_preprocess import preprocess_frames
    from zeroground.video.decode import iter_video_frames

    seconds = 10 if quick else 20
    videos = [make_video(tmp / f"v{i}.mp4", seconds, 30, (360, 640), 60, seed=i) for i in range(3)]
    vit_spec = load_clip(str(vitb32)).spec  # 224 px, as ViT-B/32
    frames = sum(1 for v in videos for _ in iter_video_frames(v, 1.0))

    def decode():
        for v in videos:
            for _ in iter_video_frames(v, 1.0):
                pass

    def decode_preprocess():
        for v in videos:
            batch = np.stack([f for f, _ in iter_video_frames(v, 1.0)])
            preprocess_frames(batch, spec=vit_spec, device="cpu")

    rate, t1 = median_rate(decode, frames, repeats)
    rate_pp, t2 = median_rate(decode_preprocess, frames, repeats)
    return {"videos": len(videos), "seconds_each": seconds, "source": "640x360 H.264 30 fps, GOP 60",
            "sampled_frames": frames, "decode_frames_per_s": rate, "decode_preprocess_224_frames_per_s": rate_pp,
            "times_s": {"decode": t1, "decode_preprocess": t2}}


def bench_clip(vitb32: Path, repeats: int, quick: bool) -> dict:
    import torch

    from zeroground.features.clip import load_clip

    out = {}
    for name, folder in (("tiny_clip", REPO / "src/zeroground/assets/tiny_clip"), ("vit_b32_sized", vitb32)):
        clip = load_clip(str(folder))
        s = clip.spec
        n = 32 if quick and name != "tiny_clip" else 64
        pixels = torch.randn(n, 3, s.crop_height, s.crop_width).numpy()
        rate, times = median_rate(lambda: clip.encode_pixels(pixels), n, repeats)
        out[name] = {"frames_per_s": rate, "batch": n, "image": [s.crop_height, s.crop_width], "dim": clip.dim,
                     "times_s": times}
        del clip
    return out


def _videos(n: int, t: int, basis: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Videos of a few steady scenes (each near one row of ``basis``) plus noise, unit rows."""
    out = {}
    for v in range(n):
        cuts = np.sort(rng.choice(np.arange(8, t - 8), size=int(rng.integers(2, 6)), replace=False))
        x = np.concatenate([np.repeat(basis[rng.integers(len(basis))][None], b - a, 0)
                            for a, b in zip(np.r_[0, cuts], np.r_[cuts, t])])
        x = x + 0.1 * rng.standard_normal(x.shape)
        out[f"v{v:05d}"] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out


def bench_pseudo(tmp: Path, repeats: int, quick: bool) -> dict:
    from zeroground.features.clip import load_clip
    from zeroground.pseudo.label import pseudo_label
    from zeroground.pseudo.psvl import VerbStats

    rng = np.random.default_rng(0)
    n = 40 if quick else 100
    lf = _videos(n, 180, rng.standard_normal((12, 512)), rng)
    durations = {v: 180.0 for v in lf}
    rate_lf, t_lf = median_rate(lambda: pseudo_label("lfvmr", lf, tmp / "lfvmr.json", durations=durations),
                                n, repeats)
    clip = load_clip(str(REPO / "src/zeroground/assets/tiny_clip"))
    nouns = ["door", "cup", "book", "chair", "phone", "box"]
    emb = np.asarray(clip.encode_texts([f"a photo of a {x}." for x in nouns]))
    ps = _videos(n, 180, emb, rng)
    stats = VerbStats(pairs={x: {"open": 2, "hold": 1, "take": 1} for x in nouns},
                      verb_totals={"open": 12, "hold": 6, "take": 6}, sentences=24)
    rate_ps, t_ps = median_rate(lambda: pseudo_label("psvl", ps, tmp / "psvl.json", durations=durations,
                                                     clip_model=clip, verb_stats=stats, nouns=nouns), n, repeats)
    return {"videos": n, "frames_per_video": 180, "lfvmr_512d_videos_per_s": rate_lf,
            "psvl_clip_tagging_64d_videos_per_s": rate_ps, "times_s": {"lfvmr": t_lf, "psvl": t_ps}}


def bench_train(repeats: int, batch: int) -> dict:
    import torch

    from train_throughput import make_batch
    from zeroground.model.psvl import GroundingModel, ModelConfig, grounding_loss

    torch.manual_seed(0)
    model = GroundingModel(ModelConfig(video_dim=512)).train()
    opt = torch.optim.Adam(model.parameters(), lr=4e-4)
    feats, mask, ids, start, end, guidance = make_batch(batch, 128, 512, 10, 506, seed=0, device="cpu")

    def step():
        opt.zero_grad(set_to_none=True)
        grounding_loss(model(feats, mask, ids), start, end, guidance)["loss"].backward()
        opt.step()

    rate, times = median_rate(step, batch, repeats)
    return {"batch": batch, "segments": 128, "video_dim": 512, "samples_per_s": rate, "times_s": times}


def projection(costs: dict, gpu_clip_fps: float, gpu_train_sps: float, gpus: list[int],
               minutes_per_video: float = 3.0, fps: float = 1.0, dim: int = 512, samples_per_video: int = 24,
               epochs: int = 100) -> list[dict]:
    """GPU-hours, fp16 storage and wall time for 10k/100k/1M videos from the measured CPU
    rates and the *assumed* GPU rates."""
    frames_per_video = minutes_per_video * 60 * fps
    decode_per_core = costs["decode"]["decode_preprocess_224_frames_per_s"] / costs["threads"]
    pseudo_per_core = min(costs["pseudo"]["lfvmr_512d_videos_per_s"],  # one process = one core
                          costs["pseudo"]["psvl_clip_tagging_64d_videos_per_s"])
    rows = []
    for n in (10_000, 100_000, 1_000_000):
        frames = n * frames_per_video
        clip_gpu_h = frames / gpu_clip_fps / 3600
        train_gpu_h = n * samples_per_video * epochs / gpu_train_sps / 3600
        decode_core_h = frames / decode_per_core / 3600
        row = {"videos": n, "frames": frames, "features_fp16_GB": frames * dim * 2 / 1e9,
               "clip_gpu_hours": clip_gpu_h, "decode_core_hours": decode_core_h,
               "pseudo_label_core_hours": n / pseudo_per_core / 3600,
               "train_gpu_hours": train_gpu_h, "wall_hours": {}}
        for g in gpus:
            # extraction: the GPUs or the decode cores (16 per GPU), whichever is slower; then training
            extract_h = max(clip_gpu_h / g, decode_core_h / (16 * g))
            row["wall_hours"][g] = extract_h + train_gpu_h / g
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--train-batch", type=int, default=32)
    p.add_argument("--gpu-clip-fps", type=float, default=3000.0,
                   help="ASSUMED ViT-B/32 fp16 frames/s of one GPU (not measured here)")
    p.add_argument("--gpu-train-sps", type=float, default=3878.0,
                   help="training samples/s of one GPU (default: the H100 figure in benchmarks/README.md)")
    p.add_argument("--gpus", default="8,64")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/scaling_costs.json"))
    a = p.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    repeats = 2 if a.quick else a.repeats
    costs: dict = {"threads": a.threads, "torch": torch.__version__, "repeats": repeats}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        from extract_throughput import make_vitb32_sized

        vitb32 = make_vitb32_sized(tmp / "vitb32")
        for name, fn in (("decode", lambda: bench_decode(tmp, vitb32, repeats, a.quick)),
                         ("clip", lambda: bench_clip(vitb32, repeats, a.quick)),
                         ("pseudo", lambda: bench_pseudo(tmp, repeats, a.quick)),
                         ("train", lambda: bench_train(repeats, a.train_batch))):
            t = time.perf_counter()
            costs[name] = fn()
            print(f"{name}: {json.dumps({k: v for k, v in costs[name].items() if k != 'times_s'})} "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
    gpus = [int(g) for g in a.gpus.split(",")]
    costs["assumptions"] = {"gpu_clip_fps": a.gpu_clip_fps, "gpu_train_sps": a.gpu_train_sps,
                            "minutes_per_video": 3.0, "feature_fps": 1.0, "dim": 512, "samples_per_video": 24,
                            "epochs": 100, "decode_cores_per_gpu": 16}
    costs["projection"] = projection(costs, a.gpu_clip_fps, a.gpu_train_sps, gpus)
    print("\nprojection (GPU rates ASSUMED: --gpu-clip-fps, --gpu-train-sps):")
    print(f"{'videos':>9} {'fp16 GB':>8} {'CLIP GPU-h':>10} {'decode core-h':>13} {'pseudo core-h':>13} "
          f"{'train GPU-h':>11} " + " ".join(f"{'wall h @' + str(g):>11}" for g in gpus))
    for r in costs["projection"]:
        print(f"{r['videos']:>9} {r['features_fp16_GB']:>8.1f} {r['clip_gpu_hours']:>10.2f} "
              f"{r['decode_core_hours']:>13.0f} {r['pseudo_label_core_hours']:>13.1f} {r['train_gpu_hours']:>11.1f} "
              + " ".join(f"{r['wall_hours'][g]:>11.2f}" for g in gpus))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(costs, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
