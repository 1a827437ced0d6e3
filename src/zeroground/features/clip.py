"""CLIP image and text encoders in the joint (projected) space.

Why our own preprocessing: the Hugging Face image processor works one PIL image
at a time in Python, which dominates extraction time. ``ClipEncoder`` does the
same four steps CLIP does (resize the shortest side with bicubic filtering,
center crop, rescale to [0, 1], normalise with CLIP's mean/std) on a whole
batch of frames in torch. The resize uses torch's antialiased bicubic kernel
(the same a=-0.5 cubic and support scaling as PIL; on CPU its uint8 kernel is a
port of PIL's, elsewhere two passes rounded to uint8 in between as PIL does), so
resized pixels differ from PIL's by at most 1 grey level and features agree
with the reference processor closely (``benchmarks/extract_throughput.py``
prints the measured maximum difference).

The small random CLIP that tests and the demo's tiny CLIP start from is built in
:mod:`zeroground.testing` (``make_tiny_clip``), not here.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from zeroground.errors import ZerogroundError


class ClipInputError(ZerogroundError, ValueError):
    """Frames or sentences the encoder cannot take (wrong shape, empty sentence)."""

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"



class ClipError(ZerogroundError, RuntimeError):
    """A CLIP encoder could not be loaded or used; the message says how to fix it."""


# ----------------------------------------------------------------------------- tiny CLIP


def _image_processor_class():
    # transformers 5 without torchvision: the PIL backend is the reference implementation.
    try:
        from transformers import CLIPImageProcessorPil

        return CLIPImageProcessorPil
    except ImportError:  # transformers 4.x
        from transformers import CLIPImageProcessor

        return CLIPImageProcessor


# ----------------------------------------------------------------------------- encoder


@dataclass(frozen=True)
class ClipPreprocess:
    """CLIP's image preprocessing parameters, as read from the processor config."""

    shortest_edge: int
    crop_height: int
    crop_width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    rescale_factor: float = 1 / 255

    @classmethod
    def from_processor(cls, proc) -> "ClipPreprocess":
        size = proc.size
        size = dict(size) if not isinstance(size, dict) else size
        shortest = size.get("shortest_edge") or min(size.get("height", 224), size.get("width", 224))
        crop = proc.crop_size
        crop = dict(crop) if not isinstance(crop, dict) else crop
        return cls(
            shortest_edge=int(shortest),
            crop_height=int(crop["height"]),
            crop_width=int(crop["width"]),
            mean=tuple(float(m) for m in proc.image_mean),
            std=tuple(float(s) for s in proc.image_std),
            rescale_factor=float(getattr(proc, "rescale_factor", 1 / 255)),
        )


def resized_shape(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    """(new_h, new_w) exactly as HF ``get_resize_output_image_size(default_to_square=False)``."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = shortest_edge, int(shortest_edge * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def preprocess_frames(frames, spec: ClipPreprocess, device="cpu"):
    """uint8 frames [N, H, W, 3] (numpy or torch) -> CLIP pixel values [N, 3, h, w] float32.

    Vectorised version of CLIP's processor: bicubic shortest-side resize with
    antialiasing, rounding to uint8 like PIL, center crop, rescale, normalise.
    """
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(frames)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ClipInputError(f"expected frames [N, H, W, 3], got shape {tuple(x.shape)}")
    x = x.to(device).permute(0, 3, 1, 2)  # [N, 3, H, W] uint8
    h, w = x.shape[-2:]
    nh, nw = resized_shape(int(h), int(w), spec.shortest_edge)
    if (nh, nw) != (h, w):
        if x.device.type == "cpu" and x.dtype == torch.uint8:
            # torch's uint8 antialiased kernel is a port of PIL's (fixed point, uint8 between passes).
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
            x = x.float()
        else:
            # PIL resizes horizontally then vertically, rounding to uint8 after each pass.
            x = x.float()
            x = F.interpolate(x, size=(int(h), nw), mode="bicubic", antialias=True, align_corners=False)
            x = x.round_().clamp_(0, 255)
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
            x = x.round_().clamp_(0, 255)
    else:
        x = x.float()
    ch, cw = spec.crop_height, spec.crop_width
    if nh < ch or nw < cw:  # HF pads small images with zeros before cropping
        pad_t, pad_l = max(0, -(-(ch - nh) // 2)), max(0, -(-(cw - nw) // 2))
        canvas = x.new_zeros((x.shape[0], 3, max(ch, nh), max(cw, nw)))
        canvas[..., pad_t : pad_t + nh, pad_l : pad_l + nw] = x
        x, nh, nw = canvas, canvas.shape[-2], canvas.shape[-1]
    top, left = (nh - ch) // 2, (nw - cw) // 2
    x = x[..., top : top + ch, left : left + cw]
    mean = torch.tensor(spec.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=x.device).view(1, 3, 1, 1)
    return (x * spec.rescale_factor - mean) / std  # [N, 3, ch, cw]


class ClipEncoder:
    """A CLIP model that embeds frames and sentences into its joint space.

    Outputs are L2-normalised float32 numpy arrays, so a dot product is the
    cosine similarity CLIP was trained with.
    """

    def __init__(self, model, tokenizer, spec: ClipPreprocess, name: str, device: str = "cpu") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.name = name
        self.device = device
        self.dim: int = int(model.config.projection_dim)
        self.max_text_len: int = int(model.config.text_config.max_position_embeddings)

    def image_features(self, pixel_values):
        """CLIP pixel values [B, 3, h, w] -> unnormalised projected features [B, D] (torch)."""
        pooled = self.model.vision_model(pixel_values=pixel_values).pooler_output  # [B, Hv]
        return self.model.visual_projection(pooled)  # [B, D]

    def encode_images(self, frames: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """uint8 frames [N, H, W, 3] -> L2-normalised features [N, D] float32."""
        import torch

        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ClipInputError(f"expected uint8 frames [N, H, W, 3], got shape {frames.shape}")
        out = np.zeros((len(frames), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for i in range(0, len(frames), max(1, batch_size)):
                pix = preprocess_frames(frames[i : i + batch_size], self.spec, self.device)
                out[i : i + len(pix)] = self.encode_pixels(pix)
        return out

    def encode_pixels(self, pixel_values) -> np.ndarray:
        """Already preprocessed pixel values [B, 3, h, w] -> L2-normalised features [B, D].

        Lets a pipeline preprocess the next batch in another thread while the model runs.
        """
        import torch

        with torch.inference_mode():
            pix = torch.as_tensor(pixel_values).to(self.device, self.model.dtype)
            feats = self.image_features(pix).float()  # [B, D]
            return torch.nn.functional.normalize(feats, dim=-1).cpu().numpy()

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Sentences -> L2-normalised text features [N, D] float32."""
        import torch

        texts = [texts] if isinstance(texts, str) else list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise ClipInputError(f"empty query at position {i}: a sentence is required")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                tok = self.tokenizer(
                    texts[i : i + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_text_len,
                    return_tensors="pt",
                ).to(self.device)
                pooled = self.model.text_model(
                    input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]
                ).pooler_output  # [B, Ht]
                feats = self.model.text_projection(pooled).float()  # [B, D]
                feats = torch.nn.functional.normalize(feats, dim=-1)
                out[i : i + len(feats)] = feats.cpu().numpy()
        return out


def _offline_message(name: str, err: Exception) -> str:
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (
        f"CLIP weights {name!r} are not on this machine, and zeroground never downloads weights at run "
        "time. On a machine with internet run\n"
        f"  python -c \"from transformers import CLIPModel, CLIPProcessor; "
        f"CLIPModel.from_pretrained('{name}').save_pretrained('clip_dir'); "
        f"CLIPProcessor.from_pretrained('{name}').save_pretrained('clip_dir')\"\n"
        "then copy 'clip_dir' here and pass its path as the encoder (a hub id works too once it is "
        f"in the local Hugging Face cache). [{first_line}]"
    )


def load_clip(name_or_path: str | Path, device: str = "cpu") -> ClipEncoder:
    """Load a CLIP encoder from a local folder or a hub id already in the local cache.

    Never downloads: a hub id that is not cached raises :class:`ClipError` saying
    how to supply the weights.
    """
    from transformers import CLIPModel, CLIPTokenizer

    name = str(name_or_path)
    path = Path(name).expanduser()
    kwargs: dict = {}
    if path.exists():
        if not path.is_dir():
            raise ClipError(f"CLIP encoder {name!r} is a file; expected a folder saved with save_pretrained")
        if not (path / "config.json").exists():
            raise ClipError(
                f"CLIP encoder folder {name!r} has no config.json; expected a folder saved with "
                "CLIPModel.save_pretrained + CLIPProcessor.save_pretrained"
            )
        src = str(path)
    else:
        src = name
        kwargs["local_files_only"] = True
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ClipError(f"device {device!r} requested but CUDA is not available")
    try:
        with _quiet_transformers():
            model = CLIPModel.from_pretrained(src, **kwargs)
            tokenizer = CLIPTokenizer.from_pretrained(src, **kwargs)
            proc = _image_processor_class().from_pretrained(src, **kwargs)
    except (OSError, ValueError) as err:
        if path.exists():
            raise ClipError(f"could not load CLIP encoder from folder {name!r}: {err}") from err
        raise ClipError(_offline_message(name, err)) from err
    model = model.eval().to(device)
    return ClipEncoder(model, tokenizer, ClipPreprocess.from_processor(proc), name=_encoder_name(name, path), device=device)


@contextlib.contextmanager
def _quiet_transformers():
    """No "Loading weights" bars: our own progress bar is the one a user should see."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _encoder_name(name: str, path: Path) -> str:
    """Name recorded in feature files and model dirs: the argument as given, so it can be reloaded."""
    return name
