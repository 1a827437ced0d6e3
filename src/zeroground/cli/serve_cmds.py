"""CLI: ``serve`` -- the library's web app and JSON API."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from zeroground.cli.app import app


@app.command("serve")
def serve(
    library: Path = typer.Option(..., "--library", "-l", help="Library folder (from `zeroground index`)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="A zeroground model directory (default: training-free)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; anything but loopback needs --auth-token."),
    port: int = typer.Option(7860, "--port", help="TCP port."),
    auth_token: Optional[str] = typer.Option(None, "--auth-token", envvar="ZEROGROUND_TOKEN", help="Token clients must send (Authorization: Bearer T, or ?token=T in a browser)."),
    upload_dir: Optional[Path] = typer.Option(None, "--upload-dir", help="Where uploads go (default LIBRARY/uploads)."),
    max_upload_mb: int = typer.Option(200, "--max-upload-mb", help="Largest accepted upload."),
    decode_timeout: float = typer.Option(120.0, "--decode-timeout", help="Seconds an upload may take to decode."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", help="Where the library's encoder is now, if it moved."),
) -> None:
    """Serve the Gradio app (/ui) and the JSON API (/api/...) for a library."""
    import uvicorn

    from zeroground.library.search import Searcher
    from zeroground.serve import Limits, ServeState, check_bind, create_app

    check_bind(host, auth_token)
    searcher = Searcher(library, model, encoder=encoder)
    state = ServeState(searcher, upload_dir or Path(library) / "uploads",
                       Limits(max_upload_bytes=max_upload_mb * 1024 * 1024, decode_timeout_s=decode_timeout))
    web = create_app(state, auth_token=auth_token)
    typer.echo(f"zeroground: {len(searcher.library)} videos; open http://{host}:{port}/ui/")
    uvicorn.run(web, host=host, port=port, log_level="warning")
