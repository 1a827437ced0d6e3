"""Vision–language dual encoders (CLIP, SigLIP, SigLIP 2) behind one interface.

An encoder is named as users of ``transformers`` name it: a local folder saved with
``save_pretrained``, or a hub id (``openai/clip-vit-base-patch32``, optionally
``@REVISION``). Hub ids are resolved by ``transformers`` / ``huggingface_hub`` exactly as
every tool of this ecosystem does: downloaded into the Hugging Face cache on first use,
``HF_HUB_OFFLINE=1`` (or no network) loads from the cache only, ``HF_ENDPOINT`` selects a
mirror. zeroground has no download code of its own.

The family (``ENCODER_FAMILIES``) is read from the saved config's ``model_type``; each
family keeps its own preprocessing and text padding rule:

- ``clip``: CLIP's processor (shortest-side bicubic resize, centre crop, CLIP mean/std),
  done batched in torch (:func:`zeroground.features.clip.preprocess_frames`, within one
  grey level of the PIL processor) because the per-image processor dominates extraction;
  texts padded to the longest in the batch with an attention mask.
- ``siglip`` / ``siglip2``: the model's own image processor (SigLIP: fixed-size resize, no
  crop, mean/std 0.5; SigLIP 2: aspect-preserving patches with an attention mask and
  spatial shapes); texts padded to the fixed ``max_length`` the model was trained with.

Outputs are L2-normalised float32, so a dot product is the cosine similarity the model
was trained with.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from zeroground.errors import ZerogroundError

DTYPES = ("float32", "float16", "bfloat16")


class EncoderError(ZerogroundError, RuntimeError):
    """An encoder could not be loaded or used; the message says how to fix it."""


class EncoderInputError(ZerogroundError, ValueError):
    """Frames or sentences the encoder cannot take (wrong shape, empty sentence)."""


@dataclass(frozen=True)
class EncoderFamily:
    """How one ``model_type`` of ``transformers`` is loaded and fed."""

    model_class: str  # class name in transformers
    text_padding: str  # "longest" (with attention mask) | "max_length" (the model's fixed length)
    batched_clip_preprocess: bool  # use zeroground's batched torch copy of CLIP's processor


ENCODER_FAMILIES: dict[str, EncoderFamily] = {
    "clip": EncoderFamily("CLIPModel", text_padding="longest", batched_clip_preprocess=True),
    "siglip": EncoderFamily("SiglipModel", text_padding="max_length", batched_clip_preprocess=False),
    "siglip2": EncoderFamily("Siglip2Model", text_padding="max_length", batched_clip_preprocess=False),
}


def parse_encoder(spec: str | Path) -> tuple[str, str | None]:
    """``"org/model@v1.0"`` → ("org/model", "v1.0"); a path or a plain id → (it, None)."""
    text = str(spec)
    if Path(text).expanduser().exists() or "@" not in text:
        return text, None
    name, _, revision = text.rpartition("@")
    if not name or not revision:
        raise EncoderError(f"encoder {text!r}: expected ID or ID@REVISION (e.g. openai/clip-vit-base-patch32@main)")
    return name, revision


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; a CUDA request without CUDA is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EncoderError(f"device {device!r} requested but CUDA is not available (use --device cpu or auto)")
    return device


def _torch_dtype(dtype: str):
    import torch

    if dtype not in DTYPES:
        raise EncoderError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    return getattr(torch, dtype)


def _pooled(out: Any):
    """``get_*_features`` return a tensor (transformers 4) or an output with ``pooler_output`` (5)."""
    return out.pooler_output if hasattr(out, "pooler_output") else out


class DualEncoder:
    """A vision–language model that embeds frames and sentences into one space.

    ``name`` (as given) and ``revision`` say how to load it again; ``fingerprint``
    identifies the weights themselves (a retrained folder under the same path differs).
    """

    def __init__(self, model, tokenizer, image_processor, *, name: str, model_type: str,
                 revision: str | None = None, device: str = "cpu", vision_dtype: str = "float32") -> None:
        from zeroground.features.clip_preprocess import ClipPreprocess

        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.name = name
        self.revision = revision
        self.model_type = model_type
        self.family = ENCODER_FAMILIES[model_type]
        self.device = device
        self.vision_dtype = vision_dtype
        # CLIP's processor parameters for the batched path; None for other families.
        self.spec = ClipPreprocess.from_processor(image_processor) if self.family.batched_clip_preprocess else None
        text_cfg = model.config.text_config
        self.max_text_len: int = int(text_cfg.max_position_embeddings)
        self.dim: int = int(getattr(model.config, "projection_dim", None) or text_cfg.hidden_size)
        self.fingerprint: str = weights_fingerprint(model)

    @property
    def metadata(self) -> dict[str, Any]:
        """What a feature store records about the encoder that made it."""
        return {"encoder": self.name, "encoder_revision": self.revision or "", "encoder_type": self.model_type,
                "encoder_fingerprint": self.fingerprint, "dim": self.dim}

    # ------------------------------------------------------------------ images
    def preprocess(self, frames, device: str | None = None) -> dict[str, Any]:
        """uint8 frames [N, H, W, 3] → the vision tower's inputs (``pixel_values``, ...), as the
        model's own processor makes them."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise EncoderInputError(f"expected uint8 frames [N, H, W, 3], got shape {frames.shape}")
        if self.spec is not None:
            from zeroground.features.clip_preprocess import preprocess_frames

            return {"pixel_values": preprocess_frames(frames, self.spec, device or "cpu")}  # [N, 3, h, w]
        from PIL import Image

        inputs = self.image_processor(images=[Image.fromarray(f) for f in frames], return_tensors="pt")
        return dict(inputs)  # SigLIP: pixel_values [N, 3, h, w]; SigLIP 2 adds attention mask, spatial shapes

    def encode_inputs(self, inputs) -> np.ndarray:
        """Preprocessed inputs (from :meth:`preprocess`, or CLIP pixel values) → unit features [B, D]."""
        import torch

        if not isinstance(inputs, dict):
            inputs = {"pixel_values": inputs}
        with torch.inference_mode():
            vision_dtype = _torch_dtype(self.vision_dtype)
            moved = {}
            for key, value in inputs.items():
                value = torch.as_tensor(value).to(self.device)
                moved[key] = value.to(vision_dtype) if value.is_floating_point() else value
            feats = _pooled(self.model.get_image_features(**moved)).float()  # [B, D]
            return torch.nn.functional.normalize(feats, dim=-1).cpu().numpy()

    # Older name of :meth:`encode_inputs` (extraction pipelines pass CLIP pixel values).
    encode_pixels = encode_inputs

    def encode_images(self, frames: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """uint8 frames [N, H, W, 3] → L2-normalised features [N, D] float32."""
        frames = np.asarray(frames)
        out = np.zeros((len(frames), self.dim), dtype=np.float32)
        for i in range(0, len(frames), max(1, batch_size)):
            chunk = frames[i : i + batch_size]
            out[i : i + len(chunk)] = self.encode_inputs(self.preprocess(chunk, device=self.device))
        return out

    # ------------------------------------------------------------------ texts
    def tokenize(self, texts: Sequence[str]) -> dict[str, Any]:
        """Sentences → the text tower's inputs under the family's padding rule (truncated to the limit)."""
        padding = "max_length" if self.family.text_padding == "max_length" else True
        return dict(self.tokenizer(list(texts), padding=padding, truncation=True, max_length=self.max_text_len,
                                   return_tensors="pt"))

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Sentences → L2-normalised text features [N, D] float32."""
        import torch

        texts = [texts] if isinstance(texts, str) else list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise EncoderInputError(f"empty query at position {i}: a sentence is required")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # SigLIP was trained without a text attention mask, and its tokenizer returns none:
        # feed the text tower exactly the inputs its own tokenizer makes.
        names = set(getattr(self.tokenizer, "model_input_names", ["input_ids", "attention_mask"]))
        names = (names & {"attention_mask"}) | {"input_ids"}
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                tok = self.tokenize(texts[i : i + batch_size])
                tok = {k: v.to(self.device) for k, v in tok.items() if k in names}
                feats = _pooled(self.model.get_text_features(**tok)).float()  # [B, D]
                out[i : i + len(feats)] = torch.nn.functional.normalize(feats, dim=-1).cpu().numpy()
        return out

    def count_text_tokens(self, text: str) -> int:
        """Tokens ``text`` takes before truncation (special tokens included)."""
        return len(self.tokenizer(text, truncation=False)["input_ids"])


def weights_fingerprint(model) -> str:
    """A short hash of the weights (first 256 values of every tensor, in name order): equal for the
    same weights under any path or hub id, different for a retrained copy."""
    import torch

    digest = hashlib.sha1()
    with torch.no_grad():
        for key, value in sorted(model.state_dict().items()):
            digest.update(key.encode())
            digest.update(value.detach().reshape(-1)[:256].float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _offline_message(name: str, revision: str | None, err: Exception) -> str:
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    at = f"@{revision}" if revision else ""
    return (
        f"encoder {name + at!r} could not be downloaded or found in the Hugging Face cache "
        f"(HF_HUB_OFFLINE is {'set' if _offline() else 'not set'}). Either run once on a machine with internet "
        "(the hub id is downloaded and cached), or save it there with\n"
        f"  python -c \"from transformers import AutoModel, AutoProcessor; "
        f"AutoModel.from_pretrained('{name}').save_pretrained('enc_dir'); "
        f"AutoProcessor.from_pretrained('{name}').save_pretrained('enc_dir')\"\n"
        f"and pass the folder 'enc_dir' as the encoder. [{first_line}]"
    )


def _offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def load_encoder(spec: str | Path, device: str = "cpu", dtype: str = "float32") -> DualEncoder:
    """Load a dual encoder from a folder, a hub id, or ``ID@REVISION``.

    ``device`` may be ``auto``; ``dtype`` applies to the vision tower (features are
    always returned as float32). Raises :class:`EncoderError` with what to do when the
    weights are neither on disk nor downloadable.
    """
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    name, revision = parse_encoder(spec)
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise EncoderError(f"encoder {name!r} is a file; expected a folder saved with save_pretrained")
        if not (path / "config.json").exists():
            raise EncoderError(
                f"encoder folder {name!r} has no config.json; expected a folder saved with "
                "<Model>.save_pretrained + <Processor>.save_pretrained"
            )
    device = resolve_device(device)
    torch_dtype = _torch_dtype(dtype)
    src = str(path) if path.exists() else name
    kwargs: dict[str, Any] = {} if revision is None else {"revision": revision}
    try:
        with _quiet_transformers():
            config = AutoConfig.from_pretrained(src, **kwargs)
            model_type = str(config.model_type)
            if model_type not in ENCODER_FAMILIES:
                raise EncoderError(
                    f"encoder {name!r} is a {model_type!r} model; zeroground knows dual encoders of type "
                    f"{', '.join(ENCODER_FAMILIES)} (get_image_features / get_text_features)"
                )
            family = ENCODER_FAMILIES[model_type]
            model = getattr(transformers, family.model_class).from_pretrained(src, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(src, **kwargs)
            image_processor = _image_processor(model_type, src, kwargs)
    except EncoderError:
        raise
    except (OSError, ValueError) as err:
        if path.exists():
            raise EncoderError(f"could not load encoder from folder {name!r}: {err}") from err
        raise EncoderError(_offline_message(name, revision, err)) from err
    model = model.eval().to(device)
    if dtype != "float32":
        # Only the vision tower runs in half precision: it is the cost of extraction, and
        # text features stay exactly as a float32 model gives them.
        model.vision_model.to(torch_dtype)
        if hasattr(model, "visual_projection"):
            model.visual_projection.to(torch_dtype)
    if not path.exists():
        revision = _resolved_commit(src, kwargs) or revision  # the commit the id resolved to: recorded, reloadable
    return DualEncoder(model, tokenizer, image_processor, name=name, model_type=model_type, revision=revision,
                       device=device, vision_dtype=dtype)


def _resolved_commit(hub_id: str, kwargs: dict) -> str | None:
    """The commit hash a hub id (and revision) resolved to, read from the cached file's snapshot path."""
    from transformers.utils.hub import cached_file, extract_commit_hash

    try:
        return extract_commit_hash(cached_file(hub_id, "config.json", **kwargs), None)
    except (OSError, ValueError):
        return None


def _image_processor(model_type: str, src: str, kwargs: dict):
    """The model's own image processor (the PIL backend: torchvision does not install beside torch 2.13)."""
    import transformers

    stem = {"clip": "CLIP", "siglip": "Siglip", "siglip2": "Siglip2"}[model_type]
    cls = getattr(transformers, f"{stem}ImageProcessorPil", None) or getattr(transformers, f"{stem}ImageProcessor")
    return cls.from_pretrained(src, **kwargs)


def check_same_encoder(recorded: dict, found: dict, *, what: str, where: str) -> None:
    """Refuse features made by another encoder than the one a model was trained on.

    ``recorded`` / ``found`` are metadata dicts with ``encoder_fingerprint`` (and
    ``encoder`` for the message); a side without a fingerprint (files from before
    zeroground recorded one) is not checked.
    """
    a, b = recorded.get("encoder_fingerprint"), found.get("encoder_fingerprint")
    if a and b and str(a) != str(b):
        raise EncoderError(
            f"{where}: {what} were made with encoder {found.get('encoder')!r} (weights {b}), but the model was "
            f"trained on features of {recorded.get('encoder')!r} (weights {a}); use the encoder the model was "
            "trained with"
        )


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
