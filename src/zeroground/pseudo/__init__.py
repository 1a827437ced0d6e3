"""Pseudo-supervision from unlabeled video: event proposals, PSVL pseudo queries,
LFVMR language-free queries, query simplification, and the pseudo-label report.

See docs/methods.md for what each method does and where its defaults come from.
"""

from __future__ import annotations

from zeroground.pseudo.label import PSEUDO_LABELERS, PseudoLabelConfig, PseudoLabelError, pseudo_label
from zeroground.pseudo.proposals import ProposalConfig, propose_events

__all__ = ["PSEUDO_LABELERS", "PseudoLabelConfig", "PseudoLabelError", "ProposalConfig",
           "propose_events", "pseudo_label"]
