"""The JSON API on a real uvicorn server: contract, errors as 4xx JSON, safety, uploads."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import numpy as np
import pytest

from zeroground.library.search import Searcher
from zeroground.serve import Limits, ServeError, ServeState, check_bind, create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def served(small_library, tmp_path_factory):
    root, world = small_library
    state = ServeState(Searcher(root), tmp_path_factory.mktemp("uploads"), Limits(max_upload_bytes=2_000_000))
    with Server(create_app(state, ui=False)) as url:
        yield url, state, world


def test_videos_search_ground_follow_the_contract(served):
    url, state, world = served
    vids = httpx.get(f"{url}/api/videos").json()["videos"]
    assert [v["id"] for v in vids] == sorted(p.video for p in world.plans)
    assert all(v["duration"] == pytest.approx(p.duration, abs=0.3) for v, p in zip(vids, sorted(world.plans, key=lambda p: p.video)))
    r = httpx.post(f"{url}/api/search", json={"query": "someone picks up the mug", "k": 3})
    assert r.status_code == 200
    res = r.json()["results"]
    assert len(res) == 3 and set(res[0]) == {"video", "start", "end", "score"}
    direct = state.searcher.search("someone picks up the mug", 3).hits
    assert [(h["video"], h["start"], h["end"]) for h in res] == [(h.video, h.start, h.end) for h in direct]
    r = httpx.post(f"{url}/api/ground", json={"video": vids[0]["id"], "query": "someone opens the door", "top_k": 3})
    spans = r.json()["spans"]
    assert r.status_code == 200 and 1 <= len(spans) <= 3
    assert all(0 <= s["start"] < s["end"] <= vids[0]["duration"] + 1e-6 for s in spans)


def test_errors_are_4xx_json_and_paths_never_escape(served):
    url, _, _ = served
    assert httpx.post(f"{url}/api/search", json={"query": "", "k": 3}).status_code == 400
    assert "empty query" in httpx.post(f"{url}/api/search", json={"query": "  "}).json()["error"]
    assert httpx.post(f"{url}/api/search", json={"k": 3}).status_code == 422
    assert httpx.post(f"{url}/api/search", json={"query": "door", "k": 0}).status_code == 400
    for bad in ("../../../../etc/passwd", "/etc/passwd", "..", "videos/../manifest.json", "manifest.json"):
        r = httpx.post(f"{url}/api/ground", json={"video": bad, "query": "door"})
        assert r.status_code == 404 and "error" in r.json(), bad
    for bad in ("..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "..%2Fmanifest.json", "upload-..%2F..%2Fmanifest.json"):
        r = httpx.get(f"{url}/media/{bad}")
        assert r.status_code == 404 and "root:" not in r.text, bad
        assert httpx.get(f"{url}/thumb/{bad}").status_code == 404
    r = httpx.get(f"{url}/../../etc/passwd")
    assert r.status_code == 404 and "root:" not in r.text
    long = httpx.post(f"{url}/api/search", json={"query": "door " * 200, "k": 1}).json()
    assert "truncated" in long["note"]


def test_media_supports_ranges_and_thumbnails_are_jpeg(served):
    url, state, world = served
    vid = world.plans[0].video
    whole = httpx.get(f"{url}/media/{vid}")
    assert whole.status_code == 200 and whole.content == (state.library.root / state.library.video(vid).file).read_bytes()
    part = httpx.get(f"{url}/media/{vid}", headers={"Range": "bytes=10-99"})
    assert part.status_code == 206 and part.content == whole.content[10:100]
    t = httpx.get(f"{url}/thumb/{vid}", params={"t": 2.0})
    assert t.status_code == 200 and t.content[:2] == b"\xff\xd8"


def test_uploads_are_checked_and_the_server_keeps_serving(served, tmp_path):
    url, state, world = served
    bad = httpx.post(f"{url}/api/upload", files={"file": ("clip.mp4", b"\x00\x01garbage" * 500, "video/mp4")})
    assert bad.status_code == 400 and "not a readable video" in bad.json()["error"]
    assert httpx.post(f"{url}/api/upload", files={"file": ("notes.txt", b"hello", "text/plain")}).status_code == 400
    big = httpx.post(f"{url}/api/upload", files={"file": ("big.mp4", b"0" * 2_100_000, "video/mp4")})
    assert big.status_code == 400 and "larger than" in big.json()["error"]
    assert httpx.get(f"{url}/api/videos").status_code == 200  # still serving
    good = httpx.post(f"{url}/api/upload", files={"file": ("mine.mp4", world.videos[1].read_bytes(), "video/mp4")})
    assert good.status_code == 200, good.text
    up = good.json()["video"]
    assert up.startswith("upload-") and good.json()["duration"] == pytest.approx(world.plans[1].duration, abs=0.3)
    # the upload's features equal the library's for the same file (same encoder, same fps)
    np.testing.assert_allclose(state._uploads[up][1].features, state.library.features(world.plans[1].video), atol=1e-4)
    r1 = httpx.post(f"{url}/api/ground", json={"video": up, "query": "someone opens the door", "top_k": 2}).json()
    r2 = httpx.post(f"{url}/api/ground", json={"video": world.plans[1].video, "query": "someone opens the door", "top_k": 2}).json()
    np.testing.assert_allclose([[s["start"], s["end"]] for s in r1["spans"]], [[s["start"], s["end"]] for s in r2["spans"]],
                               atol=1e-6)
    assert httpx.get(f"{url}/media/{up}").status_code == 200
    assert not any(p.name.endswith(".mp4") and "garbage" in p.name for p in state.upload_dir.iterdir())


def test_public_bind_needs_a_token_and_the_token_is_enforced(small_library, tmp_path):
    with pytest.raises(ServeError, match="auth-token"):
        check_bind("0.0.0.0", None)
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "s3cret")
    root, _ = small_library
    state = ServeState(Searcher(root), tmp_path / "up")
    with Server(create_app(state, auth_token="s3cret", ui=False)) as url:
        assert httpx.get(f"{url}/api/videos").status_code == 401
        assert httpx.get(f"{url}/api/videos", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(f"{url}/api/videos", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        with httpx.Client() as c:  # a browser: ?token= once, then the cookie
            assert c.get(f"{url}/api/videos", params={"token": "s3cret"}).status_code == 200
            assert c.get(f"{url}/api/videos").status_code == 200


def test_gradio_ui_is_mounted_and_serves_no_files_from_disk(small_library, tmp_path):
    root, _ = small_library
    state = ServeState(Searcher(root), tmp_path / "up")
    with Server(create_app(state)) as url:
        assert httpx.get(f"{url}/ui/").status_code == 200
        for bad in ("/etc/passwd", str(root / "manifest.json"), "../../../../etc/passwd"):
            r = httpx.get(f"{url}/ui/gradio_api/file={bad}")
            assert r.status_code in (403, 404) and "root:" not in r.text and '"encoder"' not in r.text, bad
