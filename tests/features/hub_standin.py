"""A loopback stand-in for the Hugging Face hub: serves saved model folders under the hub's file
routes (``/{repo}/resolve/{revision}/{file}``, ``/api/models/{repo}[/revision/{rev}]``), so tests
prove the real download path of ``transformers`` / ``huggingface_hub`` with ``HF_ENDPOINT``."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


class HubStandIn:
    """``with HubStandIn({"some-org/some-clip": folder}) as hub: os.environ["HF_ENDPOINT"] = hub.url``."""

    def __init__(self, repos: dict[str, Path]) -> None:
        self.repos = {name: Path(folder) for name, folder in repos.items()}
        self.commit = hashlib.sha1(b"zeroground-test-commit").hexdigest()  # 40 hex, as the hub's commit ids
        self.requests: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet test output
                pass

            def do_HEAD(self) -> None:
                stand_in._answer(self, body=False)

            def do_GET(self) -> None:
                stand_in._answer(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "HubStandIn":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlparse(h.path).path)
        self.requests.append(f"{h.command} {path}")
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "tree":
            repo, sub = "/".join(parts[2:4]), "/".join(parts[6:])
            folder = self.repos.get(repo)
            if folder is not None and (folder / sub).is_dir():
                entries = [{"type": "file" if p.is_file() else "directory", "path": str(p.relative_to(folder)),
                            "size": p.stat().st_size if p.is_file() else 0, "oid": self.commit}
                           for p in sorted((folder / sub).iterdir())]
                return self._send(h, 200, json.dumps(entries).encode(), "application/json", body)
            if folder is not None:
                return self._send(h, 404, b"Entry not found", "text/plain", body, error_code="EntryNotFound")
        elif parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo = "/".join(parts[2:4])
            if repo in self.repos:
                files = sorted(p.name for p in self.repos[repo].iterdir() if p.is_file())
                info = {"id": repo, "sha": self.commit, "siblings": [{"rfilename": f} for f in files]}
                return self._send(h, 200, json.dumps(info).encode(), "application/json", body)
        elif len(parts) >= 5 and parts[2] == "resolve":
            repo, filename = "/".join(parts[:2]), "/".join(parts[4:])
            folder = self.repos.get(repo)
            if folder is not None and (folder / filename).is_file():
                data = (folder / filename).read_bytes()
                return self._send(h, 200, data, "application/octet-stream", body,
                                  etag=hashlib.sha256(data).hexdigest())
            if folder is not None:
                return self._send(h, 404, b"Entry not found", "text/plain", body, error_code="EntryNotFound")
        return self._send(h, 404, b"Repository not found", "text/plain", body, error_code="RepoNotFound")

    def _send(self, h, status, data, ctype, body, etag=None, error_code=None) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.send_header("X-Repo-Commit", self.commit)
        if etag:
            h.send_header("ETag", f'"{etag}"')
        if error_code:
            h.send_header("X-Error-Code", error_code)
        h.end_headers()
        if body:
            h.wfile.write(data)
