#!/usr/bin/env python
"""Train the tiny CLIP shipped in ``src/zeroground/assets/tiny_clip`` (``make tiny-clip``).

Real CLIP weights cannot be downloaded offline, so the demo brings its own: a
``transformers`` ``CLIPModel`` with a small config (hidden 64, 2 layers, 64-px
images, patch 8), trained contrastively (symmetric InfoNCE, as CLIP) on
frame–caption pairs from the ``clip_train`` split of the generated world. Only
image–text pairs are used, never spans: a frame is paired with a caption of
what is happening in it, as an alt-text would describe a photo.

Batches hold at most one pair per caption *kind* (one event type, idle or walk),
the usual de-duplication of near-identical captions: with a world of ~20 event
types, random batches would otherwise be full of false negatives.

Seeded end to end (world, init, batches), single process: the same command gives
the same weights. Prints held-out frame→caption retrieval top-1 accuracy vs. chance
(frames of videos not used for training, captions from the held-out paraphrases).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def world_words() -> list[str]:
    """Every word of the world's caption grammar (the tokenizer gets one token per word)."""
    from zeroground.data.synthetic.world import (
        IDLE_CAPTIONS, WALK_CAPTIONS, all_captions, noun_vocabulary, valid_events,
    )
    from zeroground.features.clip import DEFAULT_TINY_WORDS

    words = set(DEFAULT_TINY_WORDS) | set(noun_vocabulary())
    for action, obj in valid_events():
        for c in all_captions(action, obj):
            words.update(c.split())
    for c in IDLE_CAPTIONS + WALK_CAPTIONS:
        words.update(c.split())
    words.update("a photo of".split())
    return sorted(words)


def collect_pairs(world_dir: Path, n_videos: int, seed: int, fps: float):
    """Decode clip_train videos; return pixel values and, per frame, (kind key, captions)."""
    from zeroground.data.synthetic import WorldConfig, frame_captions, make_world
    from zeroground.video.decode import decode_video

    from zeroground.data.synthetic import WorldSplit, load_plans

    cfg = WorldConfig(captions_per_event=8)
    world_json = world_dir / "annotations" / "clip_train_world.json"
    if world_json.exists() and len(load_plans(world_json)) == n_videos:  # reuse a rendered world (--world-dir)
        plans = load_plans(world_json)
        split = WorldSplit("clip_train", [world_dir / "videos" / f"{p.video}.mp4" for p in plans],
                           world_dir / "annotations" / "clip_train.json", world_json, plans)
    else:
        split = make_world(world_dir, "clip_train", n_videos, seed=seed, cfg=cfg)
    frames, keys, caps, vids = [], [], [], []
    for vi, (plan, path) in enumerate(zip(split.plans, split.videos)):
        dec = decode_video(path, fps=fps)
        for frame, t in zip(dec.frames, dec.timestamps):
            kind, captions = frame_captions(plan, float(t))
            if kind == "event":
                seg = next(s for s in plan.events if s.start <= t < s.end)
                key = f"{seg.action}:{seg.obj}"
            else:
                key = kind
            frames.append(frame)
            keys.append(key)
            caps.append(captions)
            vids.append(vi)
    return np.stack(frames), keys, caps, np.asarray(vids), split


def batches(keys: list[str], idx: np.ndarray, rng: np.random.Generator, n_steps: int):
    """Yield index batches with one frame per caption kind (kinds in random order)."""
    by_key: dict[str, np.ndarray] = {}
    for k in sorted(set(keys[i] for i in idx)):
        by_key[k] = np.asarray([i for i in idx if keys[i] == k])
    names = sorted(by_key)
    for _ in range(n_steps):
        yield np.asarray([by_key[k][rng.integers(len(by_key[k]))] for k in names])


def caption_for(key: str, captions: list[str], rng: np.random.Generator, alt_text: float) -> str:
    """One caption for a frame: a paraphrase of what happens, or (with probability
    ``alt_text``) a photo-style alt-text naming the object acted on, as web alt-texts
    that real CLIP learnt from often are ("a photo of a cup.")."""
    from zeroground.data.synthetic.world import NOUN_SYNONYMS

    if ":" in key and rng.random() < alt_text:
        syns = NOUN_SYNONYMS[key.split(":")[1]]
        return f"a photo of a {syns[rng.integers(len(syns))]}."
    return captions[rng.integers(len(captions))]


def retrieval_accuracy(encoder, frames: np.ndarray, keys: list[str]) -> tuple[float, float, int]:
    """Frame→caption top-1 over event types, captions from the held-out paraphrase pool."""
    from zeroground.data.synthetic.world import caption_pool, valid_events

    events = valid_events()
    texts = [caption_pool(a, o, held_out=True)[0] for a, o in events]
    text_feats = encoder.encode_texts(texts)  # [E, D]
    ev_idx = [i for i, k in enumerate(keys) if ":" in k]
    img = encoder.encode_images(frames[ev_idx])  # [N, D]
    pred = (img @ text_feats.T).argmax(1)
    truth = np.asarray([events.index(tuple(keys[i].split(":"))) for i in ev_idx])
    return float((pred == truth).mean()), 1.0 / len(events), len(ev_idx)


def train_tiny_clip(out: Path, *, n_videos: int = 120, n_heldout: int = 20, fps: float = 1.0,
                    steps: int = 2000, lr: float = 1e-3, seed: int = 0, threads: int = 2,
                    alt_text: float = 0.25, world_dir: Path | None = None) -> dict:
    import torch
    import torch.nn.functional as F
    from transformers import CLIPModel

    from zeroground.features.clip import ClipEncoder, ClipPreprocess, preprocess_frames
    from zeroground.testing import make_tiny_clip

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t0 = time.time()
    if world_dir is not None:
        frames, keys, caps, vids, _ = collect_pairs(Path(world_dir), n_videos + n_heldout, seed, fps)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            frames, keys, caps, vids, _ = collect_pairs(Path(tmp), n_videos + n_heldout, seed, fps)
    print(f"world: {n_videos + n_heldout} videos, {len(frames)} frames ({time.time() - t0:.0f}s)", flush=True)
    make_tiny_clip(out, world_words(), image_size=64, patch_size=8, hidden=64, layers=2, heads=2,
                   proj_dim=64, seed=seed)
    model = CLIPModel.from_pretrained(str(out))
    from transformers import CLIPTokenizer

    from zeroground.features.clip import _image_processor_class

    tokenizer = CLIPTokenizer.from_pretrained(str(out))
    spec = ClipPreprocess.from_processor(_image_processor_class().from_pretrained(str(out)))
    pixels = torch.cat([preprocess_frames(frames[i:i + 512], spec) for i in range(0, len(frames), 512)])
    pixels = pixels.to(torch.float16)  # [N, 3, 64, 64]; halves the memory of the cached inputs
    train_idx = np.flatnonzero(vids < n_videos)
    held_idx = np.flatnonzero(vids >= n_videos)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    for step, batch in enumerate(batches(keys, train_idx, rng, steps)):
        texts = [caption_for(keys[i], caps[i], rng, alt_text) for i in batch]
        tok = tokenizer(texts, padding=True, return_tensors="pt")
        img = model.get_image_features(pixel_values=pixels[batch].float())
        txt = model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
        if not isinstance(img, torch.Tensor):  # transformers 5 may return an output object
            img, txt = img.pooler_output, txt.pooler_output
        img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)  # [B, D]
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T  # [B, B]
        target = torch.arange(len(batch))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step:5d}/{steps}  loss {loss.item():.3f}  ({time.time() - t0:.0f}s)", flush=True)
    model.eval()
    model.save_pretrained(str(out))  # safetensors
    encoder = ClipEncoder(model, tokenizer, spec, name=str(out))
    acc_train, chance, _ = retrieval_accuracy(encoder, frames[train_idx[::7]], [keys[i] for i in train_idx[::7]])
    acc, chance, n = retrieval_accuracy(encoder, frames[held_idx], [keys[i] for i in held_idx])
    report = {"heldout_frame_to_caption_top1": round(acc, 4), "chance": round(chance, 4),
              "heldout_event_frames": n, "train_frame_to_caption_top1": round(acc_train, 4),
              "steps": steps, "videos": n_videos, "heldout_videos": n_heldout, "fps": fps, "seed": seed,
              "seconds": round(time.time() - t0, 1)}
    (out / "training_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report), flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("src/zeroground/assets/tiny_clip"))
    ap.add_argument("--videos", type=int, default=120, help="clip_train videos used for training")
    ap.add_argument("--heldout", type=int, default=20, help="further videos only for the retrieval check")
    ap.add_argument("--fps", type=float, default=1.0, help="frames per second sampled as image-text pairs")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--alt-text", type=float, default=0.25, help="share of photo-style alt-text captions")
    ap.add_argument("--world-dir", type=Path, default=None,
                    help="render the clip_train world here and reuse it on the next run (default: a temp dir)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    train_tiny_clip(a.out, n_videos=a.videos, n_heldout=a.heldout, fps=a.fps, steps=a.steps, lr=a.lr,
                    seed=a.seed, threads=a.threads, alt_text=a.alt_text, world_dir=a.world_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
