"""``/preview``: what a brand's customers will get, before any of them does.

Server-rendered pages, no script anywhere. Sign in with a token: a reseller token
opens its own brand, an admin token every brand. The session is a signed cookie
(HttpOnly, SameSite=Strict) naming the token, so revoking the token signs the session
out. Every form carries the session's CSRF value.

The previewed mail is made by the one compose sequence the intake uses (same sender
decision, same bytes), its HTML shown in ``<iframe sandbox srcdoc=…>`` without
``allow-scripts`` under a page policy that forbids scripts too. "Send me a test" goes
through the outbox to the brand's configured test address only, a few times per
window. In capture mode (no ``smtp_url``) the captured .eml files are listed too.

A reseller also finds its own sent mail there (attempts, SMTP replies, bounces, the
bytes as sent) and its domain setup (each DNS record to publish, its status, "check
now"). The domain setup page is the one page that runs a script (``copy.js`` from this
origin, for its copy buttons); every value is in a read-only field without it.
"""

from __future__ import annotations

from . import captured, domain, pages, sent  # noqa: F401  (their routes register on the router)
from .compose import Preview, compose_preview
from .state import RateLimiter, install_sign_in_handler, router, setup

__all__ = [
    "Preview",
    "RateLimiter",
    "compose_preview",
    "install_sign_in_handler",
    "router",
    "setup",
]
