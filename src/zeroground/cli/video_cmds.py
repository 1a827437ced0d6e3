"""CLI commands of one stage (see zeroground.cli)."""

from __future__ import annotations

from zeroground.cli import app  # noqa: F401
