"""One FastAPI server: the JSON API, the video files (by id), and the Gradio UI at ``/ui``.

API (errors are HTTP 4xx with ``{"error": message}``):

* ``GET  /api/videos``  -> ``{"videos": [{"id", "duration"}]}``
* ``POST /api/search``  ``{"query", "k"}`` -> ``{"results": [{"video", "start", "end", "score"}], "note"}``
* ``POST /api/ground``  ``{"video", "query", "top_k"}`` -> ``{"spans": [{"start", "end", "score"}], "note"}``
* ``POST /api/upload``  multipart ``file`` -> ``{"video": "upload-<hash>", "duration"}``
* ``GET  /media/{id}``  the video file (HTTP ranges, so the browser can seek)
* ``GET  /thumb/{id}?t=``  a JPEG of the frame at ``t`` seconds

With ``auth_token`` every route needs ``Authorization: Bearer <token>``, or ``?token=<token>``
once in a browser (it sets a cookie).
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import Request
from pydantic import BaseModel
from zeroground.errors import ZerogroundError
from zeroground.serve.state import NotFound, ServeState

TOKEN_COOKIE = "zeroground_token"
MAX_K = 100


class SearchBody(BaseModel):
    query: str
    k: int = 10


class GroundBody(BaseModel):
    video: str
    query: str
    top_k: int = 5


class ServeError(ZerogroundError, ValueError):
    """The server cannot start as asked (e.g. a public address without a token)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, auth_token: str | None) -> None:
    if not is_loopback(host) and not auth_token:
        raise ServeError(f"refusing to serve on {host}: any other machine could reach it; pass --auth-token "
                         "(clients then send 'Authorization: Bearer <token>'), or bind 127.0.0.1")


def create_app(state: ServeState, *, auth_token: str | None = None, ui: bool = True):
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(title="zeroground", docs_url=None, redoc_url=None)

    def err(status: int, msg: str) -> JSONResponse:
        return JSONResponse({"error": msg}, status_code=status)

    @app.exception_handler(ZerogroundError)
    async def _user_error(request: Request, exc: ZerogroundError):
        return err(404 if isinstance(exc, NotFound) else 400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _bad_body(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return err(422, f"bad request: {where or 'body'}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return err(exc.status_code, str(exc.detail))

    if auth_token:
        @app.middleware("http")
        async def _auth(request: Request, call_next):
            given = request.headers.get("authorization", "")
            given = given[7:] if given.lower().startswith("bearer ") else ""
            given = given or request.query_params.get("token", "") or request.cookies.get(TOKEN_COOKIE, "")
            if not hmac.compare_digest(given.encode(), auth_token.encode()):
                return err(401, "authentication required: send 'Authorization: Bearer <token>' or open ?token=<token>")
            response = await call_next(request)
            if request.query_params.get("token"):
                response.set_cookie(TOKEN_COOKIE, auth_token, httponly=True, samesite="strict")
            return response

    @app.get("/api/videos")
    def videos():
        return {"videos": [{"id": v.id, "duration": v.duration} for v in state.library.videos]}

    @app.post("/api/search")
    def search(body: SearchBody):
        if not body.query.strip():
            return err(400, "empty query: give a sentence describing the moment")
        if not 1 <= body.k <= MAX_K:
            return err(400, f"k must be in 1..{MAX_K}, got {body.k}")
        res = state.searcher.search(body.query, body.k)
        return {"results": [{"video": h.video, "start": h.start, "end": h.end, "score": h.score} for h in res.hits],
                "note": res.note}

    @app.post("/api/ground")
    def ground(body: GroundBody):
        if not body.query.strip():
            return err(400, "empty query: give a sentence describing the moment")
        spans, _, _, note = state.ground(body.video, body.query, body.top_k)
        return {"spans": [{"start": s.start, "end": s.end, "score": s.score} for s in spans], "note": note}

    @app.post("/api/upload")
    async def upload(request: Request):
        form = await request.form(max_part_size=state.limits.max_upload_bytes + 1)
        item = form.get("file")
        if item is None or not hasattr(item, "read"):
            return err(400, "no file: send the video as multipart field 'file'")
        import anyio

        video_id, duration = await anyio.to_thread.run_sync(state.add_upload, item.filename or "", item.file)
        return {"video": video_id, "duration": duration}

    @app.get("/media/{video_id}")
    def media(video_id: str):
        return FileResponse(state.video_file(video_id))

    @app.get("/thumb/{video_id}")
    def thumb(video_id: str, t: float = 0.0):
        return Response(state.thumbnail(video_id, t), media_type="image/jpeg",
                        headers={"Cache-Control": "max-age=3600"})

    @app.get("/")
    def root():
        return RedirectResponse("/ui/" if ui else "/api/videos")

    if ui:
        import gradio as gr

        from zeroground.serve.ui import CSS, build_ui

        # Gradio serves only its own upload cache (no allowed_paths): nothing of the disk beyond it.
        app = gr.mount_gradio_app(app, build_ui(state), path="/ui", max_file_size=state.limits.max_upload_bytes,
                                  allowed_paths=[], css=CSS, footer_links=[])
    return app
