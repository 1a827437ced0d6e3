"""The one base class of every error a user can cause.

Anything raised because of the user's input -- a missing file, a corrupt video, a config
field that does not exist, features that do not fit a model, an empty query -- derives
from :class:`ZerogroundError`. The CLI catches exactly this class, prints its message on
one line and exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class ZerogroundError(Exception):
    """A problem with the user's input; the message says what was expected, what was found, and where."""
