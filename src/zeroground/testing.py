"""Scaffolding for tests, benchmarks and the demo's assets -- not part of the pipeline.

* :func:`make_tiny_clip` -- a small random ``CLIPModel`` saved with a fully offline word-level
  tokenizer and image processor, so nothing ever needs the hub (the demo's shipped tiny CLIP
  is one of these, trained by ``scripts/train_tiny_clip.py``);
* :func:`write_test_video` -- a short H.264 video whose every second has its own colour, so
  decoding at a given fps can be checked frame by frame;
* :func:`cut_video`, :func:`scramble_video`, :func:`lie_about_duration` -- damaged copies of
  a video (cut short, random bytes mid-stream, a Matroska header claiming a longer duration).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from zeroground.features.clip import (
    BOS_TOKEN,
    EOS_TOKEN,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    _image_processor_class,
    _quiet_transformers,
)

DEFAULT_TINY_WORDS = (
    "a an the person man woman someone people is are was in on at of to into from with and "
    "then while opens closes open close door window takes puts holds picks up down sits stands "
    "walks runs turns laughs eats drinks cooks washes dishes book laptop phone cup glass bottle "
    "bag box chair table bed sofa floor shelf light red green blue yellow white black circle "
    "square triangle ball moves left right top bottom appears disappears grows shrinks"
).split()


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2 reversible byte -> printable unicode map (the tokenizer's alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _word_vocab_and_merges(words: Sequence[str]) -> tuple[dict[str, int], list[str]]:
    """CLIP-format vocabulary: byte alphabet (+ "</w>" forms), learned merges, specials last.

    The merges are learned by running BPE to completion on the word list, so
    applying them (as CLIP's tokenizer does, lowest rank first) turns every
    listed word into exactly one token; every byte is in the vocabulary, so any
    other text still tokenizes into sub-words.
    """
    byte_map = _bytes_to_unicode()
    alphabet = list(byte_map.values())
    vocab_list: list[str] = alphabet + [c + "</w>" for c in alphabet]
    corpus: list[list[str]] = []
    for word in dict.fromkeys(w.strip().lower() for w in words):
        for piece in word.split():
            chars = [byte_map[b] for b in piece.encode("utf-8")]
            chars[-1] = chars[-1] + "</w>"
            corpus.append(chars)
    merges: list[str] = []
    while True:
        counts: dict[tuple[str, str], int] = {}
        for sym in corpus:
            for pair in zip(sym, sym[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))  # most frequent, ties by text
        merges.append(f"{best[0]} {best[1]}")
        vocab_list.append(best[0] + best[1])
        for k, sym in enumerate(corpus):
            out, i = [], 0
            while i < len(sym):
                if i + 1 < len(sym) and (sym[i], sym[i + 1]) == best:
                    out.append(sym[i] + sym[i + 1])
                    i += 2
                else:
                    out.append(sym[i])
                    i += 1
            corpus[k] = out
    seen: dict[str, int] = {}
    for tok in vocab_list:
        if tok not in seen:
            seen[tok] = len(seen)
    # Specials last, as in OpenAI's vocabulary (EOS is then the largest id).
    seen[BOS_TOKEN] = len(seen)
    seen[EOS_TOKEN] = len(seen)
    return seen, merges


def make_tiny_clip(
    folder: str | Path,
    words: list[str] | None = None,
    *,
    image_size: int = 64,
    patch_size: int = 8,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 2,
    proj_dim: int = 64,
    seed: int = 0,
) -> Path:
    """Save a small random-init CLIP (model, tokenizer, image processor) to ``folder``.

    Loadable offline with ``CLIPModel.from_pretrained(folder)``,
    ``AutoProcessor.from_pretrained(folder)`` and :func:`load_clip`.
    """
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = _word_vocab_and_merges(list(words) if words is not None else list(DEFAULT_TINY_WORDS))
    for stale in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / stale).unlink(missing_ok=True)  # from_pretrained would prefer them over vocab/merges
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + ("\n" if merges else ""))

    tokenizer = CLIPTokenizer.from_pretrained(str(folder))
    image_processor = _image_processor_class()(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD),
    )
    bos_id, eos_id = vocab[BOS_TOKEN], vocab[EOS_TOKEN]
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=hidden,
            intermediate_size=hidden * 4,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            max_position_embeddings=77,
            bos_token_id=bos_id,
            eos_token_id=eos_id,
            pad_token_id=eos_id,
        ),
        vision_config=dict(
            hidden_size=hidden,
            intermediate_size=hidden * 4,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            image_size=image_size,
            patch_size=patch_size,
        ),
        projection_dim=proj_dim,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    with _quiet_transformers():
        model.save_pretrained(str(folder))
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(str(folder))
    return folder


def write_test_video(
    path: str | Path,
    *,
    seconds: float = 3.0,
    fps: int = 10,
    size: tuple[int, int] = (64, 64),
    gop: int | None = None,
    codec: str = "libx264",
    seed: int = 0,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Write a small synthetic mp4 (a moving square whose colour changes each second).

    Used by tests and benchmarks so they never need video files from elsewhere.
    ``container_options`` go to the muxer (e.g. ``{"movflags": "faststart"}``: MP4 index first).
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    rng = np.random.default_rng(seed)
    colours = rng.integers(30, 255, size=(int(math.ceil(seconds)) + 1, 3), dtype=np.uint8)
    with av.open(str(path), mode="w", options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        if gop is not None:
            stream.codec_context.gop_size = gop
        n = int(round(seconds * fps))
        for i in range(n):
            img = np.full((h, w, 3), 16, dtype=np.uint8)
            sec = i // fps
            s = max(4, min(h, w) // 4)
            x = int((w - s) * (i % fps) / max(1, fps - 1))
            y = (h - s) // 2
            img[y : y + s, x : x + s] = colours[sec]
            img[: max(2, h // 16), :] = colours[sec]  # a coloured bar makes the second obvious
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def cut_video(path: str | Path, out: str | Path, keep: float) -> Path:
    """A copy of ``path`` holding only its first ``keep`` fraction of bytes (a download cut short)."""
    data = Path(path).read_bytes()
    Path(out).write_bytes(data[: int(len(data) * keep)])
    return Path(out)


def scramble_video(path: str | Path, out: str | Path, lo: float, hi: float, seed: int = 0) -> Path:
    """A copy of ``path`` with random bytes over the fraction ``[lo, hi)`` of its media data
    (MP4: inside ``mdat``, the index left whole, so the file still opens)."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    a, b = 0, len(data)
    if path.suffix.lower() in (".mp4", ".mov", ".m4v"):
        a, b = data.find(b"mdat") + 8, data.find(b"moov")
        if not 0 < a < b:
            raise ValueError(f"{path}: scramble_video needs the MP4 index after the media data")
    i, j = a + int((b - a) * lo), a + int((b - a) * hi)
    data[i:j] = np.random.default_rng(seed).integers(0, 256, j - i, dtype=np.uint8).tobytes()
    Path(out).write_bytes(bytes(data))
    return Path(out)


def lie_about_duration(path: str | Path, out: str | Path, seconds: float) -> Path:
    """A copy of a Matroska/WebM file whose Segment Info Duration claims ``seconds``."""
    import struct

    data = bytearray(Path(path).read_bytes())
    i = data.find(b"\x44\x89\x88")  # Duration element id, 8-byte float (milliseconds by default)
    if i < 0:
        raise ValueError(f"{path}: no 8-byte Matroska Duration element")
    data[i + 3:i + 11] = struct.pack(">d", seconds * 1000.0)
    Path(out).write_bytes(bytes(data))
    return Path(out)
