"""zeroground: zero-shot video grounding (PSVL, LFVMR) from raw video to answers.

The package follows the data flow, one sub-package per stage:

    video -> features -> pseudo -> model -> train / eval -> ground

``data`` holds the annotation formats and the generated demo world; ``cli`` is a thin
shell over the library functions of each stage.
"""

__version__ = "0.1.0"


def fit(*args, **kwargs):
    """Unlabeled videos → a ready model directory: :func:`zeroground.train.fit.fit`."""
    from zeroground.train.fit import fit as _fit

    return _fit(*args, **kwargs)
