"""Frames/s of ``zeroground extract`` vs a naive loop, on the same generated videos.

Naive loop (what one writes first): decode every frame with PyAV and convert it
to RGB, keep the frames at the sampling times, run the Hugging Face CLIP image
processor on one image at a time, one forward pass per frame.

Pipeline (``zeroground.features.extract.extract``): threaded decoding that
converts only the sampled frames (and seeks past unneeded GOPs), batched
torch preprocessing, batched forward passes, decoding overlapped with encoding.

Both sample the same frames; the script checks that both give the same
features (max |diff| and min cosine printed). Models: a tiny CLIP (64 px,
2 layers) and a ViT-B/32-sized ``CLIPModel`` with random weights (``CLIPConfig()``
defaults: the compute of openai/clip-vit-base-patch32). Prints medians over
repeats and the ratio.

    python benchmarks/extract_throughput.py                 # CPU
    python benchmarks/extract_throughput.py --device cuda   # GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def make_video(path: Path, seconds: float, fps: int, size: tuple[int, int], gop: int, seed: int) -> Path:
    """A textured, moving scene (so the codec has real work), libx264 yuv420p."""
    import av
    from PIL import Image

    h, w = size
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(h // 8, 2 * w // 8, 3), dtype=np.uint8)
    texture = np.asarray(Image.fromarray(small).resize((2 * w, h), Image.BILINEAR))  # [h, 2w, 3]
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.gop_size = gop
        for i in range(int(seconds * fps)):
            x0 = (3 * i) % w
            img = texture[:, x0 : x0 + w].copy()
            s = h // 4
            cx = int((w - s) * (0.5 + 0.5 * np.sin(i / fps)))
            img[h // 3 : h // 3 + s, cx : cx + s] = (40 * (i // fps)) % 256
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_vitb32_sized(folder: Path) -> Path:
    """Random CLIPModel with CLIPConfig defaults (ViT-B/32 sizes) + the tiny tokenizer/processor."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    from zeroground.features.clip import _quiet_transformers
    from zeroground.testing import make_tiny_clip

    make_tiny_clip(folder, image_size=224, patch_size=32)  # tokenizer + 224 px processor
    cfg = CLIPConfig()
    tok_cfg = json.loads((folder / "config.json").read_text())["text_config"]
    cfg.text_config.vocab_size = tok_cfg["vocab_size"]
    cfg.text_config.bos_token_id = tok_cfg["bos_token_id"]
    cfg.text_config.eos_token_id = tok_cfg["eos_token_id"]
    cfg.text_config.pad_token_id = tok_cfg["pad_token_id"]
    torch.manual_seed(0)
    with _quiet_transformers():
        CLIPModel(cfg).eval().save_pretrained(str(folder))
    return folder


def naive_extract(model_dir: Path, videos: list[Path], fps: float, device: str) -> dict[str, np.ndarray]:
    """Decode every frame, HF processor per image, one forward per frame."""
    import av
    import torch
    from transformers import CLIPModel

    from zeroground.features.clip import _image_processor_class
    from zeroground.video.decode import sample_times

    proc = _image_processor_class().from_pretrained(str(model_dir))
    model = CLIPModel.from_pretrained(str(model_dir)).to(device).eval()
    out = {}
    for path in videos:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            duration = float(s.duration * s.time_base)
            targets = list(sample_times(duration, fps))
            chosen, prev, k = [], None, 0
            for frame in c.decode(s):
                img = frame.to_ndarray(format="rgb24")  # every frame converted
                t = float(frame.pts * s.time_base)
                while k < len(targets) and targets[k] < t:
                    chosen.append(prev if prev is not None else img)
                    k += 1
                prev = img
            chosen += [prev] * (len(targets) - k)
        feats = []
        with torch.inference_mode():
            for img in chosen:
                pix = proc(images=img, return_tensors="pt")["pixel_values"].to(device)
                f = model.get_image_features(pixel_values=pix)
                f = f if torch.is_tensor(f) else f.pooler_output
                feats.append(torch.nn.functional.normalize(f, dim=-1)[0].float().cpu().numpy())
        out[path.stem] = np.stack(feats)
    return out


def pipeline_extract(model_dir: Path, videos: list[Path], fps: float, device: str, batch_size: int, tmp: Path) -> dict[str, np.ndarray]:
    from zeroground.features.clip import load_clip
    from zeroground.features.extract import extract
    from zeroground.features.store import FeatureStore

    enc = load_clip(model_dir, device=device)
    out = tmp / f"feats_{time.monotonic_ns()}.h5"
    extract(videos, enc, out, fps=fps, device=device, batch_size=batch_size, progress=False)
    with FeatureStore.open(out) as store:
        feats = {v: store[v] for v in store.video_ids}
    out.unlink()
    return feats


def timed(fn, repeats: int, sync) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        result = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--videos", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--size", default="360x640", help="HxW of the generated videos")
    ap.add_argument("--native-fps", type=int, default=30)
    ap.add_argument("--gop", type=int, default=60, help="keyframe interval in frames (2 s at 30 fps)")
    ap.add_argument("--fps", type=float, default=1.0, help="sampling rate of the extraction")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default="tiny,vitb32")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    h, w = (int(x) for x in args.size.split("x"))
    results = {"device": args.device, "torch_threads": torch.get_num_threads(), "args": {k: str(v) for k, v in vars(args).items()}, "models": {}}
    if args.device.startswith("cuda"):
        results["gpu"] = torch.cuda.get_device_name()
    import av
    import transformers

    from zeroground.features.clip import _image_processor_class

    results["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__, "av": av.__version__}
    print(
        f"device {args.device} {results.get('gpu', '')}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"transformers {transformers.__version__}, av {av.__version__}, reference processor {_image_processor_class().__name__}"
    )
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        t0 = time.perf_counter()
        videos = [make_video(tmp / f"bench{i}.mp4", args.seconds, args.native_fps, (h, w), args.gop, i) for i in range(args.videos)]
        print(f"generated {len(videos)} videos of {args.seconds:g} s, {w}x{h} @ {args.native_fps} fps in {time.perf_counter() - t0:.1f} s")
        from zeroground.testing import make_tiny_clip

        for name in args.models.split(","):
            model_dir = make_tiny_clip(tmp / "tiny") if name == "tiny" else make_vitb32_sized(tmp / "vitb32")
            # warm-up (first CUDA context / kernels, file cache)
            pipeline_extract(model_dir, videos[:1], args.fps, args.device, args.batch_size, tmp)
            naive_t, naive_f = timed(lambda: naive_extract(model_dir, videos, args.fps, args.device), args.repeats, sync)
            pipe_t, pipe_f = timed(lambda: pipeline_extract(model_dir, videos, args.fps, args.device, args.batch_size, tmp), args.repeats, sync)
            n_frames = sum(len(v) for v in naive_f.values())
            assert n_frames == sum(len(v) for v in pipe_f.values())
            diff = max(float(np.abs(naive_f[k] - pipe_f[k]).max()) for k in naive_f)
            cos = min(float((naive_f[k] * pipe_f[k]).sum(1).min()) for k in naive_f)
            naive_fps = n_frames / statistics.median(naive_t)
            pipe_fps = n_frames / statistics.median(pipe_t)
            row = {
                "frames": n_frames,
                "naive_s": naive_t,
                "pipeline_s": pipe_t,
                "naive_frames_per_s": naive_fps,
                "pipeline_frames_per_s": pipe_fps,
                "speedup": pipe_fps / naive_fps,
                "max_abs_diff": diff,
                "min_cosine": cos,
            }
            results["models"][name] = row
            print(
                f"[{name}] {n_frames} frames at {args.fps:g} fps on {args.device}: naive {naive_fps:.1f} frames/s "
                f"(median {statistics.median(naive_t):.2f} s), pipeline {pipe_fps:.1f} frames/s "
                f"(median {statistics.median(pipe_t):.2f} s) -> {pipe_fps / naive_fps:.2f}x; "
                f"features max|diff| {diff:.2e}, min cosine {cos:.6f}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
