"""The HTTP API, the preview pages and one-click unsubscribe (FastAPI)."""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
