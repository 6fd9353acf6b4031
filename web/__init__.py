"""The explorer: a web page over the interp.v1 service (Starlette over the SDK, plain ES-module pages).

``interp-web --server HOST:PORT`` starts it (:mod:`web.cli`); :func:`web.app.create_app` builds the
ASGI application. The web process computes nothing itself: every view is one or a few SDK calls,
and nothing here imports torch (tests/e2e/test_web_app.py checks).
"""

from __future__ import annotations

__all__ = ["create_app", "WebSettings"]

from web.app import create_app
from web.settings import WebSettings
