"""Grounding sentences in videos: the ``Grounder`` (encode once, ask many) and the
training-free CLIP baseline."""

from zeroground.ground.grounder import GroundedSpan, Grounder, GroundError, ground
from zeroground.ground.training_free import clip_training_free, score_windows

__all__ = ["Grounder", "GroundedSpan", "GroundError", "ground", "clip_training_free", "score_windows"]
