"""The files of a model directory and reading its config (shared by ``model_dir`` and
``ensemble``, which both write model directories)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from zeroground.config import convert
from zeroground.errors import ZerogroundError
from zeroground.model.config import AnyModelConfig

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
    return convert(data["model"], AnyModelConfig, where=f"{path}:model"), dict(data.get("metadata") or {})
