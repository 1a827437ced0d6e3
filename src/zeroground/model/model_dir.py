"""The model directory: everything needed to use a trained grounding model.

    MODEL_DIR/weights.safetensors   state dict (the reference's parameter names)
    MODEL_DIR/config.yaml           {model: resolved ModelConfig or LFVMRConfig
                                     (``architecture``: psvl | lfvmr: the architecture only),
                                     metadata: {readout: {span, attention_ratio} (Readout),
                                     text_encoder (CLIP-query models), source, seed, ...}}
    MODEL_DIR/vocab.json            token → index (token-query models only)

An ensemble (``zeroground.model.ensemble``) keeps its members' weights in
``MODEL_DIR/member_<k>/`` and lists them in ``config.yaml``; ``load_model_dir`` loads
either kind.

``import_psvl`` converts a released PSVL checkpoint (a ``torch.save``d state dict)
into this format, building the vocabulary from the training annotation file as the
reference does — the checkpoint itself does not carry it. ``import_lfvmr`` does the same
for a checkpoint of the seed LFVMR code (no vocabulary: its query is a CLIP vector).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
import yaml

from zeroground.config import to_dict
from zeroground.io import atomic_path, atomic_write_json, atomic_write_text
from zeroground.model.ensemble import MEMBERS_KEY, EnsembleModel, member_id_map
from zeroground.model.files import (  # noqa: F401 - re-exported: the model directory's API
    CONFIG_FILE,
    FORMAT_VERSION,
    VOCAB_FILE,
    WEIGHTS_FILE,
    ModelDirError,
    model_readout,
    read_model_config,
)
from zeroground.model.preprocess import build_vocab
from zeroground.model.architectures import build_model
from zeroground.model.config import AnyModelConfig, ModelConfig
from zeroground.model.lfvmr import lfvmr_config_from_state_dict
from zeroground.model.psvl import GroundingModel

def save_model_dir(directory: str | Path, model: torch.nn.Module, cfg: AnyModelConfig,
                   vocab: dict[str, int] | None = None, metadata: dict[str, Any] | None = None,
                   text_encoder: str | None = None) -> Path:
    """Write weights, resolved config and vocabulary (each file atomically). The metadata records
    the model's span read-out (``model.readout``) and, for a CLIP-query model, ``text_encoder``:
    the CLIP model (path or hub id) that embeds its test sentences."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if cfg.query_encoder == "tokens" and vocab is None:
        raise ModelDirError("a token-query model needs its vocabulary to be saved with it")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "zeroground-model", "version": str(FORMAT_VERSION)})
    meta = {"format_version": FORMAT_VERSION, "architecture": cfg.architecture, "query_side": cfg.query_encoder}
    if cfg.query_encoder == "clip":
        meta["text_encoder"] = text_encoder
    meta["readout"] = to_dict(model.readout)
    meta.update(metadata or {})
    text = yaml.safe_dump({"model": to_dict(cfg), "metadata": meta}, sort_keys=False)
    atomic_write_text(directory / CONFIG_FILE, text)
    if vocab is not None:
        atomic_write_json(directory / VOCAB_FILE, vocab, indent=1)
    return directory


def load_model_dir(directory: str | Path, impl: str = "fast") -> tuple[torch.nn.Module, AnyModelConfig, dict[str, int] | None]:
    """Load (model in eval mode, config, vocabulary or None). The model reads spans out as the
    directory's ``metadata.readout`` says (``model.readout``: change it to read out otherwise);
    ``impl``: "fast" or "reference", two implementations of the same maths."""
    directory = Path(directory)
    cfg, meta = read_model_config(directory)
    vocab = None
    if (directory / VOCAB_FILE).is_file():
        vocab = json.loads((directory / VOCAB_FILE).read_text())
    if meta.get(MEMBERS_KEY):  # zeroground.model.ensemble: same interface, members averaged
        model = _load_ensemble(directory, cfg, meta[MEMBERS_KEY], vocab, impl)
    else:
        model = load_weights(directory, cfg, impl)
    model.readout = model_readout(meta, where=str(directory))
    model.eval()
    if cfg.query_encoder == "tokens" and vocab is None:
        raise ModelDirError(f"{directory}: token-query model without {VOCAB_FILE}")
    return model, cfg, vocab


def _load_ensemble(directory: Path, cfg: ModelConfig, names: list, vocab: dict[str, int] | None,
                   impl: str) -> EnsembleModel:
    """Members of an ensemble directory; where a member's vocabulary differs from the
    ensemble's, it is built with its own vocabulary size and reads queries through an id map."""
    members, maps = [], []
    for name in names:
        sub = directory / str(name)
        own_vocab = None
        if cfg.query_encoder == "tokens" and (sub / VOCAB_FILE).is_file():
            own_vocab = json.loads((sub / VOCAB_FILE).read_text())
        if own_vocab is None or own_vocab == vocab or vocab is None:
            members.append(load_weights(sub, cfg, impl))
            maps.append(None)
        else:
            own_cfg, _ = read_model_config(sub)
            members.append(load_weights(sub, dataclasses.replace(cfg, vocab_size=own_cfg.vocab_size), impl))
            maps.append(member_id_map(vocab, own_vocab))
    if all(m is None for m in maps):
        return EnsembleModel(members)
    return EnsembleModel(members, [member_id_map(vocab, vocab) if m is None else m for m in maps])


def load_weights(directory: Path, cfg: AnyModelConfig, impl: str = "fast") -> torch.nn.Module:
    """The network of ``cfg.architecture`` built from ``cfg`` with ``directory``'s weights (strictly checked)."""
    from safetensors.torch import load_file

    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelDirError(f"{directory}: {WEIGHTS_FILE} is missing")
    model = build_model(cfg, impl)
    load_state_dict_checked(model, load_file(str(weights)), source=str(weights))
    return model


def _shape_reason(name: str, expected: tuple[int, ...], found: tuple[int, ...], cfg: AnyModelConfig) -> str:
    if name == "pos_embd.pe" and expected[2] != found[2]:
        return f"the checkpoint expects {found[2]}-d video features, the model {cfg.video_dim}-d (video_dim)"
    if name == "text_mlp.weight" and expected[0] == found[0]:
        return f"the checkpoint's query vectors are {found[1]}-d, the model's {expected[1]}-d (clip_dim)"
    if name == "query_encoder.embedding.weight" and expected[1:] == found[1:]:
        return f"the checkpoint's vocabulary has {found[0]} entries, the model's {expected[0]} (vocab_size)"
    if name.startswith("video_encoder.gru.weight_ih") and expected[0] == found[0]:
        return f"the checkpoint expects {found[1]}-d video features, the model {cfg.video_dim}-d (video_dim)"
    if name.startswith("video_encoder.feature_aggregation.0.weight") and expected[0] == found[0]:
        return "the checkpoint's video feature dimension differs (video_dim)"
    return "a model size differs (compare the config with the checkpoint)"


def load_state_dict_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with a message naming each tensor that does not fit, and why."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    problems = []
    for name in sorted(set(own) & set(state)):
        exp, got = tuple(own[name].shape), tuple(state[name].shape)
        if exp != got:
            problems.append(f"  {name}: checkpoint {list(got)}, model {list(exp)} — {_shape_reason(name, exp, got, model.cfg)}")
    if missing:
        problems.append(f"  missing from the checkpoint: {', '.join(missing[:8])}{' …' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(f"  not in the model: {', '.join(unexpected[:8])}{' …' if len(unexpected) > 8 else ''}")
    if problems:
        raise ModelDirError(f"{source} does not fit the model:\n" + "\n".join(problems))
    model.load_state_dict(state, strict=True)


def _unwrap_checkpoint(obj: Any, source: str) -> dict[str, torch.Tensor]:
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelDirError(f"{source}: expected a state dict (name → tensor)")
    if all(k.startswith("module.") for k in obj):  # saved from DataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def read_checkpoint(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The state dict of a ``torch.save``d checkpoint of the seeds' code (name → tensor)."""
    if not checkpoint.is_file():
        raise ModelDirError(f"checkpoint not found: {checkpoint}")
    try:
        raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise ModelDirError(f"{checkpoint}: cannot read as a PyTorch checkpoint: {exc}") from exc
    return _unwrap_checkpoint(raw, str(checkpoint))


def config_from_psvl_state(state: dict[str, torch.Tensor], **overrides: Any) -> ModelConfig:
    """Read the sizes of a PSVL checkpoint off its tensors (so other feature dims import too)."""
    def shape(name: str) -> tuple[int, ...]:
        if name not in state:
            raise ModelDirError(f"not a PSVL checkpoint: tensor {name} is missing")
        return tuple(state[name].shape)

    vocab_size, embed_dim = shape("query_encoder.embedding.weight")
    q_hidden = shape("query_encoder.gru.weight_hh_l0")[1]
    v_hidden, video_dim = shape("video_encoder.gru.weight_hh_l0")[1], shape("video_encoder.gru.weight_ih_l0")[1]
    hidden = shape("video_encoder.feature_aggregation.0.bias")[0]

    def count(prefix: str) -> int:
        return len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})

    sizes = dict(
        query_encoder="tokens", vocab_size=vocab_size, embed_dim=embed_dim, query_gru_hidden=q_hidden,
        video_gru_hidden=v_hidden, video_dim=video_dim, hidden=hidden,
        fusion_layers=count("v_fusor.layers."), nonlocal_layers=count("non_locals_layer."),
        conv_kernel=shape("v_fusor.layers.0.convbnrelu.module.0.weight")[2],
    )
    sizes.update(overrides)
    return ModelConfig(**sizes)


def read_training_tokens(path: str | Path) -> list[list[str]]:
    """The ``tokens`` of every item of a PSVL-JSON training file, in file order."""
    path = Path(path)
    try:
        items = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{path}: cannot read PSVL annotations: {exc}") from exc
    if not isinstance(items, list):
        raise ModelDirError(f"{path}: expected a JSON list of annotations")
    tokens = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("tokens"), list):
            raise ModelDirError(f"{path}: item {i} has no 'tokens' list")
        tokens.append([str(t) for t in item["tokens"]])
    return tokens


def import_psvl(checkpoint: str | Path, train_annotations: str | Path, out: str | Path,
                video_dim: int | None = None) -> Path:
    """Convert a released PSVL checkpoint into a model directory.

    The vocabulary is rebuilt from ``train_annotations`` (PSVL JSON) exactly as the
    reference builds it; its size must match the checkpoint's embedding. ``video_dim``,
    if given, is checked against the checkpoint.
    """
    checkpoint = Path(checkpoint)
    state = read_checkpoint(checkpoint)
    vocab = build_vocab(read_training_tokens(train_annotations))
    rows = tuple(state.get("query_encoder.embedding.weight", torch.empty(0, 0)).shape)[0]
    if rows and rows != len(vocab):
        raise ModelDirError(
            f"{checkpoint} does not fit the vocabulary: tensor query_encoder.embedding.weight has {rows} rows "
            f"(words), but the vocabulary built from {train_annotations} has {len(vocab)} entries — pass the "
            f"training annotation file the checkpoint was trained on"
        )
    cfg = config_from_psvl_state(state, vocab_size=len(vocab), **({"video_dim": video_dim} if video_dim else {}))
    model = GroundingModel(cfg)
    load_state_dict_checked(model, state, source=str(checkpoint))
    return save_model_dir(out, model, cfg, vocab, metadata={
        "source": "psvl-checkpoint", "checkpoint": str(checkpoint), "train_annotations": str(train_annotations),
    })


def import_lfvmr(checkpoint: str | Path, out: str | Path, video_dim: int | None = None,
                 clip_dim: int | None = None, text_encoder: str | None = None) -> Path:
    """Convert a checkpoint of the seed LFVMR code (a ``torch.save``d state dict of its
    ``SimpleModel``) into a model directory (``architecture: lfvmr``).

    The sizes are read off the tensors; ``video_dim`` / ``clip_dim``, if given, are the
    feature widths the user means to evaluate with, and a tensor that does not fit them is
    named in the error. ``text_encoder`` is recorded for embedding test sentences."""
    checkpoint = Path(checkpoint)
    state = read_checkpoint(checkpoint)
    try:
        cfg = lfvmr_config_from_state_dict(state)
    except KeyError as exc:
        raise ModelDirError(f"{checkpoint}: not an LFVMR checkpoint: tensor {exc.args[0]} is missing") from None
    if video_dim is not None:
        cfg.video_dim = int(video_dim)
    if clip_dim is not None:
        cfg.clip_dim = int(clip_dim)
    model = build_model(cfg)
    load_state_dict_checked(model, state, source=str(checkpoint))
    return save_model_dir(out, model, cfg, None, metadata={"source": "lfvmr-checkpoint", "checkpoint": str(checkpoint)},
                          text_encoder=text_encoder)
