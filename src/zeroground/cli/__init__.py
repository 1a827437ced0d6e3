"""The ``zeroground`` command line: a thin shell over the library functions.

Each stage keeps its commands in its own module here; heavy imports (torch,
transformers, spaCy) happen inside the commands so ``--help`` stays instant.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="zeroground",
    help="Zero-shot video grounding: find the moment a sentence describes, trained without annotations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.command()
def version() -> None:
    """Print the zeroground version."""
    from zeroground import __version__

    typer.echo(__version__)


def _register() -> None:
    # Importing a module registers its commands on ``app``.
    from zeroground.cli import data_cmds, model_cmds, pseudo_cmds, video_cmds, demo_cmds  # noqa: F401
    from zeroground.cli import library_cmds, serve_cmds  # noqa: F401


_register()


def main() -> None:
    app()
