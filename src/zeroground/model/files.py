"""The files of a model directory and reading its config (shared by ``model_dir`` and
``ensemble``, which both write model directories)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from zeroground.config import ConfigError, convert
from zeroground.errors import ZerogroundError
from zeroground.model.config import AnyModelConfig, Readout

WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.yaml"
VOCAB_FILE = "vocab.json"
FORMAT_VERSION = 1


class ModelDirError(ZerogroundError, ValueError):
    """A model directory or checkpoint that cannot be used, with the reason."""


def read_model_config(directory: str | Path) -> tuple[AnyModelConfig, dict[str, Any]]:
    """(model config -- ModelConfig or LFVMRConfig, by ``architecture`` --, metadata) of a model
    directory, without loading weights."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise ModelDirError(f"{directory} is not a model directory: {CONFIG_FILE} is missing")
    data = yaml.safe_load(path.read_text()) or {}
    if "model" not in data:
        raise ModelDirError(f"{path}: expected a 'model' section")
    model, meta = dict(data["model"] or {}), dict(data.get("metadata") or {})
    _move_old_fields(model, meta)
    cfg = convert(model, AnyModelConfig, where=f"{path}:model")
    model_readout(meta, where=str(path))  # a bad read-out is an error here, not at the first prediction
    return cfg, meta


# Fields that model directories written before the model config held the architecture only
# had under ``model:``: the read-out (now ``metadata.readout``), the text encoder (now
# ``metadata.text_encoder`` only), and the training-time word-vector initialisation and the
# implementation choice (neither is a property of the trained model: dropped).
_OLD_READOUT_FIELDS = {"span_readout": "span", "attention_ratio": "attention_ratio"}
_OLD_DROPPED_FIELDS = ("word_vectors", "word_vector_prompt", "freeze_word_vectors", "impl")


def _move_old_fields(model: dict[str, Any], meta: dict[str, Any]) -> None:
    readout = {new: model.pop(old) for old, new in _OLD_READOUT_FIELDS.items() if old in model}
    if readout and "readout" not in meta:
        meta["readout"] = readout
    text_encoder = model.pop("text_encoder", None)
    if text_encoder and not meta.get("text_encoder"):
        meta["text_encoder"] = text_encoder
    for name in _OLD_DROPPED_FIELDS:
        model.pop(name, None)


def model_readout(meta: dict[str, Any], where: str = "model directory") -> Readout:
    """The span read-out a model directory's metadata records (``metadata.readout``; PSVL's
    regression when it records none)."""
    try:
        return convert(meta.get("readout") or {}, Readout, where=f"{where}:metadata.readout")
    except ConfigError as exc:
        raise ModelDirError(str(exc)) from None
