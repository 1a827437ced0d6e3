"""The ``zeroground`` command line: a thin shell over the library functions.

Each stage keeps its commands in its own module here (``cli/<topic>_cmds.py``, importing
``app`` from :mod:`zeroground.cli.app`); heavy imports (torch, transformers, spaCy) happen
inside the commands so ``--help`` stays instant. Every user error is printed as one line
and exits 2 (:mod:`zeroground.cli.app`).
"""

from __future__ import annotations

from zeroground.cli.app import EXIT_BAD_INPUT, CommandLineError, app, error_line  # noqa: F401


def _register() -> None:
    # Importing a module registers its commands on ``app``.
    from zeroground.cli import data_cmds, model_cmds, pseudo_cmds, video_cmds, demo_cmds, fit_cmds, training_free_cmds  # noqa: F401
    from zeroground.cli import library_cmds, serve_cmds  # noqa: F401


_register()


def main() -> None:
    app()
