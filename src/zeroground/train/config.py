"""Training configuration: one YAML file ↔ these dataclasses (``zeroground.config``).

    model:   ModelConfig (PSVL) or LFVMRConfig (the seed LFVMR), by model.architecture — the architecture
    readout: how the trained model reads its span out (Readout; written into its model directory)
    data:    what to train on (annotation file, feature store, optional query vectors / val set)
    train:   optimisation recipe (SPEC §4 defaults: Adam 4e-4, batch 256, drop_last, 500 epochs, seed 38),
             initialisation (word vectors) and the text encoder of a CLIP-query model
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zeroground.config import load_config
from zeroground.model.config import AnyModelConfig, ModelConfig, Readout


@dataclass
class DataConfig:
    """Training data. The annotation file may hold PSVL pseudo-labels or true spans."""

    train_annotations: str = "PATH/TO/charades_train_pseudo_supervision_TEP_PS.json"
    video_features: str = "PATH/TO/charades_i3d_features"  # folder of <vid>.npy or one .h5
    format: str = "auto"  # annotation reader: auto | psvl | charades_sta | activitynet
    durations: str | None = None  # per-video durations (Charades-STA text files only)
    # CLIP-space query vectors, float32 [N, Dc] aligned with the annotation file order
    # (query_encoder: clip). Written e.g. by the LFVMR pseudo-labeller.
    query_vectors: str | None = None
    # The seed LFVMR (model.architecture: lfvmr): CLIP frame features its training queries are
    # drawn from, per item per epoch (same video ids; the frame rate may differ); None = video_features.
    query_features: str | None = None
    # Optional validation set, evaluated per epoch for the log only (no model selection).
    val_annotations: str | None = None
    val_format: str = "auto"
    val_features: str | None = None  # default: same store as training
    val_durations: str | None = None
    preload_features: bool = True  # keep every training video in memory (the reference does)


@dataclass
class OptimConfig:
    """The optimisation recipe; defaults are PSVL's (SPEC §4)."""

    epochs: int = 500
    batch_size: int = 256
    drop_last: bool = True
    lr: float = 4e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    # Multiplies the SmoothL1 localisation term of the loss (1.0 = PSVL's objective). On [0, 1]
    # coordinates that term is ~100x smaller than the attention-guidance term, so with short
    # training budgets the regression head barely learns; a larger weight rebalances them.
    localization_loss_weight: float = 1.0
    seed: int = 38
    num_threads: int | None = None  # torch threads; None = torch's default
    # Token-query models: initial word embeddings from this CLIP model's text encoder (path or hub
    # id; zeroground.model.word_vectors), None = random as PSVL; the prompt wraps each word.
    word_vectors: str | None = None
    word_vector_prompt: str = "{}"
    freeze_word_vectors: bool = False  # keep the initial word embeddings fixed
    # CLIP-query models: the CLIP model (path or hub id) that embeds sentences as queries -- the
    # validation set's, and test sentences' (recorded as the model directory's metadata.text_encoder).
    text_encoder: str | None = None
    # Per-sample perturbation of CLIP-space query vectors each step, by name
    # (zeroground.train.noise.QUERY_NOISE: none | lafite | gaussian) and level.
    query_noise: str = "none"
    query_noise_level: float = 0.0
    # Probability of replacing each word of a token query with <UNK> during training (0 = PSVL).
    # Test sentences carry words the pseudo queries never had ("woman", "room"); the reference
    # maps them to <UNK>, whose embedding training never touched. Word dropout trains that
    # embedding to mean "an unknown word" and keeps the model from leaning on any one token.
    word_dropout: float = 0.0
    # Probability of each of two <UNK> words being inserted into a token query while training
    # (0 = PSVL). Test sentences are longer than pseudo queries ("put person ball room" against
    # "put ball"): inserted unknown words teach the query encoder that extra, unknown words
    # around the verb and the object do not change the moment.
    word_insertion: float = 0.0
    # Save the average of the weights at the end of each of the last k epochs instead of the
    # final ones (stochastic weight averaging, Izmailov et al. 2018); 0 = the final weights (PSVL).
    average_last_epochs: int = 0
    # Ensemble (zeroground.train.members): `ensemble` runs of this recipe with seeds seed,
    # seed + 1, ..., read out as one model with their attention averaged (zeroground.model.ensemble).
    ensemble: int = 1
    # Bagging: member k trains on its own pseudo-label draw, draw_path(data.train_annotations, k)
    # (<stem>.draw<k>.json beside the file; `fit` writes them with pseudo-label seed seed + k),
    # so the members' label noise differs and averages out. Member 0 reads the file itself.
    bagging: bool = False
    val_every: int = 1  # epochs between validation passes (when val_annotations is set)
    val_batch_size: int = 256
    plot: bool = True


@dataclass
class TrainConfig:
    model: AnyModelConfig = field(default_factory=ModelConfig)
    readout: Readout = field(default_factory=Readout)
    data: DataConfig = field(default_factory=DataConfig)
    train: OptimConfig = field(default_factory=OptimConfig)


def load_train_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    return load_config(path, TrainConfig, overrides)
