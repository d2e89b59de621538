"""Rendering an event in a brand and language: the engine (:mod:`.engine`), the helpers
templates call (:mod:`.helpers`) and the bounded sandbox for resellers' own templates
(:mod:`.sandbox`). Callers import from here."""

from __future__ import annotations

from markupsafe import escape

from .engine import Event, Recipient, Rendered, Renderer, sample_event
from .helpers import BLOCK, SUBJECT_END, TEXT_WIDTH
from .sandbox import MAX_OUTPUT_CHARS, MAX_RENDER_SECONDS, MAX_STEPS, MAX_VALUE_CHARS

__all__ = [
    "BLOCK",
    "MAX_OUTPUT_CHARS",
    "MAX_RENDER_SECONDS",
    "MAX_STEPS",
    "MAX_VALUE_CHARS",
    "SUBJECT_END",
    "TEXT_WIDTH",
    "Event",
    "Recipient",
    "Rendered",
    "Renderer",
    "escape",
    "sample_event",
]
