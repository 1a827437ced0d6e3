"""The grounding models' configurations (PSVL's and the seed LFVMR's: the architecture only), the span read-out
(``Readout``) and the query side of a batch (no network code here, so every part of ``zeroground.model`` can import
them without importing the network)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Union

from torch import Tensor

from zeroground.config import ConfigError
from zeroground.errors import ZerogroundError

SPAN_READOUTS = ("regression", "attention")


class ModelConfigError(ConfigError):
    """A model config whose values do not make a model (sizes that do not divide, unknown read-out)."""


class ModelInputError(ZerogroundError, ValueError):
    """Inputs that do not fit the model: queries of the wrong kind, features of the wrong shape."""


@dataclass
class ModelConfig:
    """Every size of the model. Defaults are PSVL's Charades config (8.5 M parameters)."""

    architecture: Literal["psvl"] = "psvl"  # key of zeroground.model.ARCHITECTURES
    query_encoder: str = "tokens"  # key of QUERY_ENCODERS: "tokens" | "clip"
    video_dim: int = 1024  # D_v of the input features (I3D: 1024)
    num_segments: int = 128  # videos are resampled to this many segments
    max_query_len: int = 10  # word ids per query (tokens encoder)
    vocab_size: int = 506  # 4 specials + vocabulary built from the training file
    embed_dim: int = 300  # word embedding size
    query_gru_hidden: int = 256  # per direction
    video_gru_hidden: int = 256  # per direction
    hidden: int = 256  # fusion width (q, v, fusors, non-local, head)
    fusion_layers: int = 3  # blocks in each of s_fusor, v_fusor, cv_fusor
    fusion_heads: int = 1
    conv_kernel: int = 3
    nonlocal_layers: int = 2
    nonlocal_heads: int = 4
    nonlocal_dropout: float = 0.0
    dropout: float = 0.5  # of the aggregation blocks
    clip_dim: int = 512  # CLIP embedding size (clip encoder)
    clip_query_len: int = 4  # query features made from one CLIP vector (clip encoder)
    # GT end segment when the end is not found among the positions (SPEC §2): PSVL's 127
    gt_end_fallback: ClassVar[str] = "last_segment"

    def __post_init__(self) -> None:
        if self.hidden % max(1, self.nonlocal_heads):
            raise ModelConfigError(f"hidden={self.hidden} is not divisible by nonlocal_heads={self.nonlocal_heads}")
        if self.hidden % max(1, self.fusion_heads):
            raise ModelConfigError(f"hidden={self.hidden} is not divisible by fusion_heads={self.fusion_heads}")


@dataclass
class LFVMRConfig:
    """Every size of the seed's network; defaults are its Charades config (SPEC §4)."""

    architecture: Literal["lfvmr"] = "lfvmr"  # key of zeroground.model.ARCHITECTURES
    video_dim: int = 1024  # D_v of the video features (I3D: 1024)
    clip_dim: int = 512  # CLIP space of the query (text feature or selected frame)
    num_segments: int = 128
    pe_positions: int = 256  # rows of the positional-encoding table (the reference's 256)
    video_gru_hidden: int = 256  # per direction
    hidden: int = 256  # fusion width
    heads: int = 4  # of the cross- and self-attention layers
    cross_layers: int = 3
    self_layers: int = 2
    dropout: float = 0.5  # of the video aggregation block
    pe_dropout: float = 0.1
    num_candidates: int = 9  # CLIP frames the selector chooses from
    selector_dim: int = 128  # ATP d_model
    selector_layers: int = 2
    selector_heads: int = 2
    selector_ff: int = 128
    selector_dropout: float = 0.1

    # What the rest of zeroground reads off a model config (ModelConfig has them as fields):
    query_encoder: ClassVar[str] = "clip"  # the query is one CLIP-space vector
    gt_end_fallback: ClassVar[str] = "after_valid"  # GT end not found → n + 1 (SPEC §2)

    def __post_init__(self) -> None:
        if self.video_dim % 2:
            raise ModelConfigError(f"video_dim must be even for the sinusoidal positional encoding; got {self.video_dim}")
        if self.hidden % self.heads:
            raise ModelConfigError(f"hidden={self.hidden} is not divisible by heads={self.heads}")
        if self.pe_positions < self.num_segments:
            raise ModelConfigError(f"pe_positions={self.pe_positions} < num_segments={self.num_segments}")
        if self.num_candidates < 1:
            raise ModelConfigError(f"num_candidates must be >= 1; got {self.num_candidates}")



IMPLS = ("fast", "reference")  # two implementations of the same maths (``impl=`` of build_model / load_model_dir)


@dataclass
class Readout:
    """How a span is read out of the network at inference (its ``spans`` output): not part of the
    architecture -- the same weights serve both -- so it lives in the model directory's metadata
    (``metadata.readout``), chosen by the training config's ``readout`` section."""

    # "regression": the head's (start, end), as PSVL and the seed LFVMR; "attention": the run of
    # segments around the temporal-attention peak whose weight stays >= attention_ratio x the
    # peak (``attention_spans``).
    span: Literal["regression", "attention"] = "regression"
    attention_ratio: float = 1 / 3

    def __post_init__(self) -> None:
        if self.span not in SPAN_READOUTS:
            raise ModelConfigError(f"unknown readout.span {self.span!r}; choose one of {list(SPAN_READOUTS)}")
        if not 0.0 < self.attention_ratio <= 1.0:
            raise ModelConfigError(f"readout.attention_ratio must be in (0, 1]; got {self.attention_ratio}")


def check_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise ModelConfigError(f"unknown impl {impl!r}; choose one of {list(IMPLS)}")
    return impl


AnyModelConfig = Union[ModelConfig, LFVMRConfig]  # `model:` of a config: picked by `architecture`


@dataclass
class QueryBatch:
    """The query side of a batch; which field is used depends on the query encoder."""

    ids: Tensor | None = None  # [B, L] word ids, 0 = padding ("tokens")
    vectors: Tensor | None = None  # [B, Dc] or [B, K, Dc] CLIP-space vectors ("clip")

    def __len__(self) -> int:
        t = self.ids if self.ids is not None else self.vectors
        return 0 if t is None else int(t.shape[0])
