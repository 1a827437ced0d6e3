"""CLIP image and text encoders in the joint (projected) space.

Why our own preprocessing: the Hugging Face image processor works one PIL image
at a time in Python, which dominates extraction time. ``ClipEncoder`` does the
same four steps CLIP does (resize the shortest side with bicubic filtering,
center crop, rescale to [0, 1], normalise with CLIP's mean/std) on a whole
batch of frames in torch. The resize uses torch's antialiased bicubic kernel
(the same a=-0.5 cubic and support scaling as PIL; on CPU its uint8 kernel is a
port of PIL's, elsewhere two passes rounded to uint8 in between as PIL does), so
resized pixels differ from PIL's by at most 1 grey level and features agree
with the reference processor closely (``benchmarks/extract_throughput.py``
prints the measured maximum difference).

The small random CLIP that tests and the demo's tiny CLIP start from is built in
:mod:`zeroground.testing` (``make_tiny_clip``), not here.
"""

from __future__ import annotations

import contextlib



from zeroground.features.clip_preprocess import (  # noqa: E402,F401
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    BOS_TOKEN,
    EOS_TOKEN,
    ClipPreprocess,
    resized_shape,
    preprocess_frames,
    _image_processor_class,
)
# The loader and encoder serve every dual-encoder family (zeroground.features.encoders);
# these are their CLIP-era names, which scripts written against zeroground 0.1 import.
from zeroground.features.encoders import DualEncoder as ClipEncoder  # noqa: E402
from zeroground.features.encoders import EncoderError as ClipError  # noqa: E402,F811
from zeroground.features.encoders import EncoderInputError as ClipInputError  # noqa: E402
from zeroground.features.encoders import load_encoder as load_clip  # noqa: E402


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
