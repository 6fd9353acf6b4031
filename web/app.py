"""The ASGI application: the route table (pages, their JSON APIs, static files) and its guard."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from client import InterpClient
from client.errors import InterpError
from web.api import embedding, jobs, lab, lab_data, lab_more, layers, models, robustness
from web.errors import WebError, error_response, handle_error
from web.explorer import Explorer
from web.live import live_socket
from web.security import Guard, Session
from web.settings import WebSettings

STATIC = Path(__file__).parent / "static"


SHELL = (STATIC / "page.html").read_text()
"""Every page is this shell (header, navigation, an empty ``main``) and its ES module, which fills it."""


def _page(title: str, script: str) -> Callable[[Request], Awaitable[Response]]:
    body = SHELL.replace("{title}", title).replace("{script}", script)

    async def endpoint(request: Request) -> Response:
        return HTMLResponse(body, headers={"Cache-Control": "no-cache"})

    return endpoint


async def login(request: Request) -> JSONResponse:
    """POST ``{"token": ...}``: the access token once, then the HttpOnly session cookie."""
    session: Session = request.app.state.session
    try:
        body = await request.json()
    except ValueError:
        body = None
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not session.check_login(token):
        raise WebError("UNAUTHENTICATED", "wrong access token", field="token", status=401)
    return JSONResponse({"ok": True}, headers={"Set-Cookie": session.cookie_header()})


ROUTES = [
    Route("/", _page("Models", "index")),
    Route("/login", _page("Login", "login")),
    Route("/lab", _page("Lab", "lab")),
    Route("/robustness", _page("Robustness", "robustness")),
    Route("/embedding", _page("Embedding", "embedding")),
    Route("/live", _page("Live", "live")),
    Route("/models/{model}", _page("Model", "model")),
    Route("/models/{model}/layers/{layer}", _page("Layer", "layer")),
    Route("/models/{model}/layers/{layer}/units/{unit}", _page("Unit", "unit")),
    Mount(
        "/api",
        routes=[
            Route("/login", login, methods=["POST"]),
            WebSocketRoute("/live", live_socket),
            Route("/models", models.list_models),
            Route("/datasets", robustness.datasets),
            Route("/robustness", robustness.run, methods=["POST"]),
            Route("/robustness/stored", robustness.stored),
            Route("/embedding", embedding.run, methods=["POST"]),
            Route("/models/{model}", models.describe),
            Route("/models/{model}/layers/{layer}", layers.units),
            Route("/models/{model}/layers/{layer}/units/{unit}", layers.unit),
            Route("/models/{model}/layers/{layer}/visualize", layers.visualize, methods=["POST"]),
            Route("/models/{model}/layers/{layer}/index", jobs.build_index, methods=["POST"]),
            Route("/lab/upload", lab.upload, methods=["POST"]),
            Route("/lab/images/{digest}", lab.image),
            Route("/lab/datasets/{dataset}/images", lab_data.page),
            Route("/lab/datasets/{dataset}/images/{position:int}", lab_data.load, methods=["POST"]),
            Route("/lab/{digest}/analysis", lab.analysis),
            Route("/lab/{digest}/saliency", lab.saliency),
            Route("/lab/{digest}/attack", lab.attack),
            Route("/lab/{digest}/closest-failure", lab.closest_failure),
            Route("/lab/{digest}/unit", lab.unit_map),
            Route("/lab/{digest}/neighbors", lab_more.neighbors),
            Route("/lab/{digest}/dream", lab_more.dream, methods=["POST"]),
            Route("/lab/{digest}/interpolate", lab_more.interpolate, methods=["POST"]),
        ],
    ),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
]


NOT_FOUND_PAGE = SHELL.replace("{title}", "Not found").replace("{script}", "notfound")


async def not_found(request: Request, exc: Exception) -> Response:
    """An unknown path: the explorer's page saying so (with its navigation), or for ``/api/`` the
    JSON error every API answer uses; never the framework's bare text."""
    if request.url.path.startswith("/api/"):
        return error_response(WebError("NOT_FOUND", f"no API at {request.url.path}", status=404))
    return HTMLResponse(NOT_FOUND_PAGE, status_code=404, headers={"Cache-Control": "no-cache"})


def create_app(settings: WebSettings, *, client: InterpClient | None = None, secure_cookie: bool = False) -> Starlette:
    """The explorer over the service ``settings.server`` (one SDK client for the process's life).

    Args:
        client: an SDK client to use instead of one made from ``settings`` (tests).
        secure_cookie: the port is served over TLS: the session cookie gets ``Secure``.
    """
    explorer = Explorer(settings, client)
    session = Session(settings.access_token, secure_cookie=secure_cookie)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            explorer.close()

    app = Starlette(
        routes=ROUTES,
        middleware=[Middleware(Guard, session=session, hosts=settings.hosts())],
        exception_handlers={InterpError: handle_error, WebError: handle_error, 404: not_found},
        lifespan=lifespan,
    )
    app.state.explorer = explorer
    app.state.session = session
    return app
