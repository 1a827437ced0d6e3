"""Ensembles: several grounding models of one config (seeds, or pseudo-label draws), read out as one.

Why: trained on noisy pseudo-labels, the same recipe run with different seeds lands
on models that disagree on the harder queries (on the demo's development world, single
PSVL models spread by +-3 R1@0.5 between seeds). Averaging their temporal attention
(and regression outputs) and reading the span out of the average is the classic
remedy; it needs no labels and keeps the model interface, so ``predict_spans``,
``zeroground evaluate`` and ``zeroground ground`` use an ensemble like one model.

On disk an ensemble is a model directory whose ``config.yaml`` lists its members
(``metadata.ensemble_members``: sub-directories, each an ordinary model directory);
``vocab.json`` at the top covers every member's words. :func:`save_ensemble_dir` builds
one from trained model directories, refusing members that do not share the model config.

Token-query members may have different vocabularies -- members trained on different
pseudo-label draws (bagging) see slightly different words and word counts, so their
word ids differ. The ensemble's vocabulary is then the union, and each member reads a
query through a map from ensemble ids to its own (a word it never saw is its ``<UNK>``),
so every member gets exactly the ids it would get alone.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from zeroground.model.preprocess import SPECIAL_TOKENS, UNK
from zeroground.model.psvl import GroundingModel, ModelConfig, QueryBatch, Readout, as_query_batch, read_out_spans

MEMBERS_KEY = "ensemble_members"


class EnsembleModel(nn.Module):
    """Members sharing one :class:`ModelConfig`; outputs are the members' means, and ``spans``
    are read out of those means under the ensemble's ``readout`` (the members' own are unused).

    ``encode_video`` concatenates the members' encodings along the feature axis, so a
    video is encoded once and ``ground`` splits it back -- the same two-step use as
    :class:`GroundingModel`."""

    def __init__(self, members: Sequence[GroundingModel], id_maps: Sequence[Tensor] | None = None):
        """``id_maps[k]`` ``[V]`` maps the ensemble's word ids to member k's (None: shared ids)."""
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if id_maps is not None and len(id_maps) != len(members):
            raise ValueError(f"{len(id_maps)} word-id maps for {len(members)} members")
        self.members = nn.ModuleList(members)
        # [M, V]; a buffer so it follows the model to its device (not saved: rebuilt from the vocabularies)
        self.id_maps: Tensor | None
        self.register_buffer("id_maps", None if id_maps is None else
                             torch.stack([torch.as_tensor(m, dtype=torch.long) for m in id_maps]), persistent=False)
        self.cfg: ModelConfig = members[0].cfg
        self.readout = Readout()

    def forward(self, video_feats: Tensor, video_mask: Tensor, query: "QueryBatch | Tensor") -> dict[str, Tensor]:
        video_mask = video_mask.reshape(video_mask.shape[0], -1).bool()
        return self.ground(self.encode_video(video_feats, video_mask), video_mask, query)

    def encode_video(self, video_feats: Tensor, video_mask: Tensor) -> Tensor:
        """[B, S, Dv] → [B, S, M·D] (member encodings side by side)."""
        return torch.cat([m.encode_video(video_feats, video_mask) for m in self.members], dim=2)

    def ground(self, v: Tensor, video_mask: Tensor, query: "QueryBatch | Tensor") -> dict[str, Tensor]:
        parts = torch.chunk(v, len(self.members), dim=2)
        queries = [query] * len(self.members)
        if self.id_maps is not None:
            ids = as_query_batch(query).ids
            if ids is not None:
                queries = [QueryBatch(ids=m[ids]) for m in self.id_maps]
        outs = [m.ground(p, video_mask, q) for m, p, q in zip(self.members, parts, queries)]
        timestamps = torch.stack([o["timestamps"] for o in outs]).mean(0)  # [B, 2]
        weights = torch.stack([o["attention_weights"] for o in outs]).mean(0)  # [B, S]
        mask = video_mask.reshape(video_mask.shape[0], -1).bool()
        return {"timestamps": timestamps, "attention_weights": weights,
                "spans": read_out_spans(self.readout, timestamps, weights, mask)}


def save_ensemble_dir(directory: str | Path, members: Sequence[str | Path],
                      metadata: dict[str, Any] | None = None) -> Path:
    """Copy the model directories ``members`` into ``directory/member_<k>`` and write the
    ensemble's config (the first member's, with ``metadata.ensemble_members``; its read-out
    among them) and vocabulary.

    Raises ``ModelDirError`` when a member is not a model directory, is itself an
    ensemble, or differs from the first in model config (the vocabulary size aside where
    vocabularies differ) -- averaging such models would mix outputs
    that do not mean the same. Different vocabularies are joined (:func:`union_vocab`)."""
    import json

    import yaml

    from zeroground.config import to_dict
    from zeroground.io import atomic_write_json, atomic_write_text
    from zeroground.model.files import CONFIG_FILE, VOCAB_FILE, ModelDirError, read_model_config

    members = [Path(m) for m in members]
    if not members:
        raise ModelDirError("an ensemble needs at least one member model directory")
    cfgs, metas, vocabs = [], [], []
    for m in members:
        cfg, meta = read_model_config(m)
        if meta.get(MEMBERS_KEY):
            raise ModelDirError(f"{m} is itself an ensemble; give its member directories instead")
        cfgs.append(cfg)
        metas.append(meta)
        vocabs.append(json.loads((m / VOCAB_FILE).read_text()) if (m / VOCAB_FILE).is_file() else None)
    shared_vocab = all(v == vocabs[0] for v in vocabs)
    for m, cfg in zip(members[1:], cfgs[1:]):
        a, b = to_dict(cfgs[0]), to_dict(cfg)
        diff = sorted(k for k in a if a[k] != b.get(k) and not (k == "vocab_size" and not shared_vocab))
        if diff:
            raise ModelDirError(f"{m} cannot join an ensemble with {members[0]}: model config differs in {diff}")
    vocab = vocabs[0] if shared_vocab else union_vocab(vocabs, members)
    ens_cfg = cfgs[0] if shared_vocab else dataclasses.replace(cfgs[0], vocab_size=len(vocab))
    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    names = []
    for k, m in enumerate(members):
        name = f"member_{k}"
        shutil.copytree(m, directory / name)
        names.append(name)
    meta = {key: value for key, value in metas[0].items() if key not in ("seed",)}
    meta.update(metadata or {})
    meta[MEMBERS_KEY] = names
    meta["member_seeds"] = [mt.get("seed") for mt in metas]
    atomic_write_text(directory / CONFIG_FILE,
                      yaml.safe_dump({"model": to_dict(ens_cfg), "metadata": meta}, sort_keys=False))
    if vocab is not None:
        atomic_write_json(directory / VOCAB_FILE, vocab, indent=1)
    return directory


def union_vocab(vocabs: Sequence[dict[str, int] | None], members: Sequence[Path]) -> dict[str, int]:
    """The specials at their fixed ids, then every member's words in alphabetical order."""
    from zeroground.model.files import ModelDirError

    for m, v in zip(members, vocabs):
        if v is None:
            raise ModelDirError(f"{m} has no vocabulary, but other members' vocabularies differ")
        bad = [s for s, i in SPECIAL_TOKENS.items() if v.get(s) != i]
        if bad:
            raise ModelDirError(f"{m}/vocab.json does not hold the special tokens at ids 0-3 ({bad})")
    words = sorted({w for v in vocabs for w in v if w not in SPECIAL_TOKENS})  # type: ignore[union-attr]
    return {**SPECIAL_TOKENS, **{w: len(SPECIAL_TOKENS) + i for i, w in enumerate(words)}}


def member_id_map(ensemble_vocab: dict[str, int], member_vocab: dict[str, int]) -> Tensor:
    """``[V]`` long: ensemble word id -> the member's id for the same word (its ``<UNK>`` if unseen)."""
    out = torch.full((max(ensemble_vocab.values()) + 1,), UNK, dtype=torch.long)
    for word, i in ensemble_vocab.items():
        out[i] = member_vocab.get(word, UNK)
    return out
