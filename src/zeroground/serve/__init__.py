"""``zeroground serve``: the JSON API and the Gradio UI on one FastAPI server."""

from zeroground.serve.app import ServeError, check_bind, create_app
from zeroground.serve.state import Limits, ServeState, UploadError

__all__ = ["ServeError", "check_bind", "create_app", "Limits", "ServeState", "UploadError"]
