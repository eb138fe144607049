"""The web app and REST API behind ``ferkit serve``: a FastAPI app (``create_app``) on uvicorn, its settings
(``ServeSettings``), the bounded inference pool, video jobs, and the static page served at ``/``.

FastAPI, uvicorn and python-multipart are the ``serve`` extra (``pip install "ferkit[serve]"``); nothing here is
imported by ``import ferkit``, and nothing here imports torch unless an explanation is asked for.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ferkit.serve.app import create_app
    from ferkit.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from ferkit.serve.app import create_app

        return create_app
    if name == "ServeSettings":
        from ferkit.serve.settings import ServeSettings

        return ServeSettings
    raise AttributeError(f"module 'ferkit.serve' has no attribute {name!r}")
