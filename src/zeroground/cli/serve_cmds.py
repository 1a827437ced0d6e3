"""CLI: `serve`."""
