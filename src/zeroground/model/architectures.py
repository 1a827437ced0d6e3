"""The grounding networks zeroground can train and load, by name (``model.architecture``).

* ``psvl``  -- PSVL's cross-modality two-stage attention network (``zeroground.model.psvl``),
  with word-token or CLIP-vector queries;
* ``lfvmr`` -- the seed LFVMR network with its learned ATP frame selector
  (``zeroground.model.lfvmr``): one CLIP-space query vector.

Each entry pairs the config dataclass with the network class; every other part of
zeroground builds a model through :func:`build_model` and reads the config's shared fields
(``video_dim``, ``num_segments``, ``query_encoder``, ``clip_dim``). A config holds the architecture
only: the implementation (``impl``) is an argument of :func:`build_model`, the span read-out the
network's ``readout`` attribute (``zeroground.model.config.Readout``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from zeroground.model.config import AnyModelConfig, ModelConfig, ModelConfigError
from zeroground.model.lfvmr import LFVMRConfig, LFVMRModel
from zeroground.model.psvl import GroundingModel


@dataclass(frozen=True)
class Architecture:
    config: type
    network: type[nn.Module]
    summary: str


ARCHITECTURES: dict[str, Architecture] = {
    "psvl": Architecture(ModelConfig, GroundingModel, "PSVL's network (Nam et al. 2021): tokens or CLIP-vector queries"),
    "lfvmr": Architecture(LFVMRConfig, LFVMRModel,
                          "the seed LFVMR network with its ATP frame selector (Kim et al. 2023; aniki-ly reproduction)"),
}

def architecture_of(cfg: Any) -> Architecture:
    name = getattr(cfg, "architecture", None)
    if name not in ARCHITECTURES:
        raise ModelConfigError(f"unknown model architecture {name!r}; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def build_model(cfg: AnyModelConfig, impl: str = "fast") -> nn.Module:
    """The network of ``cfg.architecture``, freshly initialised (from torch's global RNG);
    ``impl``: "fast" (default) or "reference", two implementations of the same maths."""
    return architecture_of(cfg).network(cfg, impl=impl)
