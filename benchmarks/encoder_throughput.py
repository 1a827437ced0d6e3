"""Vision-tower frames/s of ViT-B/32- and ViT-L/14-sized dual encoders (random weights) per
device and precision, through zeroground's encoder (preprocessing excluded: pixel values are
made once), plus the cosine of each precision's features to float32's.

    python benchmarks/encoder_throughput.py                    # CPU: float32 and bfloat16
    python benchmarks/encoder_throughput.py --device cuda      # GPU: float32, float16, bfloat16

Prints medians over repeats and the ratio of each precision to float32 measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = {  # the compute of openai/clip-vit-base-patch32 and clip-vit-large-patch14
    "ViT-B/32": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                     patch_size=32, image_size=224),
    "ViT-L/14": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                     patch_size=14, image_size=224),
}


def save_random_clip(folder: Path, vision: dict) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPModel

    from zeroground.testing import make_tiny_clip

    make_tiny_clip(folder, image_size=224)  # tokenizer + processor at 224 px
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(vision_config=vision, text_config=dict(vocab_size=64, num_hidden_layers=1),
                         projection_dim=512)).eval().save_pretrained(str(folder))
    return folder


def main() -> None:
    import torch

    from zeroground.features.encoders import load_encoder

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", nargs="+", default=list(SIZES))
    args = ap.parse_args()
    dtypes = ["float32", "bfloat16"] + (["float16"] if args.device.startswith("cuda") else [])
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(args.batch, 240, 320, 3), dtype=np.uint8)
    print(f"device {args.device}, batch {args.batch}, torch threads {torch.get_num_threads()}")
    print(f"{'model':<9} {'dtype':<9} {'frames/s (median)':>18} {'x float32':>10} {'min cos':>9}")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            folder = save_random_clip(Path(tmp) / "clip", dict(SIZES[size]))
            ref = None
            base = None
            for dtype in dtypes:
                enc = load_encoder(folder, device=args.device, dtype=dtype)
                pix = enc.preprocess(frames, device=args.device)
                enc.encode_inputs(pix)  # warm-up
                times = []
                for _ in range(args.repeats):
                    if args.device.startswith("cuda"):
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    feats = enc.encode_inputs(pix)
                    times.append(time.perf_counter() - t0)
                rate = args.batch / statistics.median(times)
                ref = feats if ref is None else ref
                base = rate if base is None else base
                cos = float(np.min(np.sum(ref * feats, axis=1)))
                print(f"{size:<9} {dtype:<9} {rate:>18.1f} {rate / base:>10.2f} {cos:>9.5f}", flush=True)


if __name__ == "__main__":
    main()
