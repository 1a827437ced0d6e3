"""The ``zeroground`` Typer app and its one error handler (command modules import ``app`` from here).

One error handler for every command (:class:`_Commands`): a
:class:`~zeroground.errors.ZerogroundError` -- bad input -- is printed as one line
``error: …`` and the command exits with status 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import click
import typer
from typer.core import TyperGroup

from zeroground.errors import ZerogroundError

EXIT_BAD_INPUT = 2


class CommandLineError(ZerogroundError, ValueError):
    """Options that do not go together, or a missing one the command needs."""


def error_line(exc: BaseException) -> str:
    """The one line the CLI prints for a user error."""
    return "error: " + " ".join(part.strip() for part in str(exc).splitlines() if part.strip())


class _Commands(TyperGroup):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ZerogroundError as exc:
            typer.secho(error_line(exc), fg=typer.colors.RED, err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None


app = typer.Typer(
    name="zeroground",
    cls=_Commands,
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
