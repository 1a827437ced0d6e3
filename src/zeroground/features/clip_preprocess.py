"""CLIP's image preprocessing, batched in torch (the per-image PIL processor dominates extraction
time otherwise), and CLIP's constants. Used by :mod:`zeroground.features.encoders` for the
``clip`` family and re-exported by :mod:`zeroground.features.clip`."""

from __future__ import annotations

from dataclasses import dataclass

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"



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
