"""The per-process state every page's API shares: one SDK client, the caches, the snippet writer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from client import InterpClient
from web.cache import LruCache
from web.errors import WebError
from web.python_code import python_call
from web.settings import WebSettings

T = TypeVar("T")

# (weights sha256, layer, unit, parameters as sorted JSON) -> (PNG, the parameters the service resolved)
VisualKey = tuple[str, str, int, str]
Visual = tuple[bytes, dict[str, Any]]


class Explorer:
    """Created once per web process (:func:`web.app.create_app`); the pages reach it as ``app.state.explorer``.

    The service token lives in :attr:`client` only: no response carries it, and the Python
    snippets read it from ``INTERP_TOKEN`` instead.
    """

    def __init__(self, settings: WebSettings, client: InterpClient | None = None) -> None:
        self.settings = settings
        self.client = client or InterpClient(
            settings.server, timeout=settings.timeout, token=settings.token, tls=settings.tls, ca_file=settings.ca_file,
            cert_file=settings.cert_file, key_file=settings.key_file
        )
        self.uploads: LruCache[str, bytes] = LruCache(
            settings.upload_cache, max_bytes=settings.upload_cache_bytes, size=len
        )
        self.visuals: LruCache[VisualKey, Visual] = LruCache(settings.visual_cache)

    def close(self) -> None:
        self.client.close()

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A blocking SDK call off the event loop."""
        return await run_in_threadpool(fn, *args, **kwargs)

    def code(
        self, method: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, *, image_note: str = ""
    ) -> str:
        """The "copy as Python" snippet for one SDK call against this explorer's service."""
        return python_call(
            self.settings.server, method, args, kwargs, image_note=image_note or None, token=bool(self.settings.token)
        )

    def weights_sha256(self, model: str) -> str:
        """The served weights' sha256 (the cache key's first part); NOT_FOUND for an unknown model."""
        for info in self.client.list_models():
            if info.name.lower() == model.lower():
                return info.weights.sha256 or f"{info.name}:{'pretrained' if info.pretrained else 'random'}"
        raise WebError("NOT_FOUND", f"no model {model!r} is served", field="model")

    def upload(self, digest: str) -> bytes:
        """An uploaded image by its sha256; NOT_FOUND once it has left the bounded cache."""
        data = self.uploads.get(digest)
        if data is None:
            raise WebError(
                "NOT_FOUND",
                f"image {digest[:12]}… is no longer held by the explorer (it keeps the last "
                f"{self.settings.upload_cache} uploads): upload it again",
                field="image",
            )
        return data


def explorer_of(request: Request) -> Explorer:
    explorer: Explorer = request.app.state.explorer
    return explorer


def json_endpoint(work: Callable[[Explorer, Request], Any]) -> Callable[[Request], Awaitable[JSONResponse]]:
    """The endpoint answering ``work(explorer, request)``'s JSON; the work (blocking SDK calls) runs off the loop."""

    async def endpoint(request: Request) -> JSONResponse:
        explorer = explorer_of(request)
        return JSONResponse(await explorer.call(work, explorer, request))

    endpoint.__name__ = endpoint.__qualname__ = work.__name__.lstrip("_")
    return endpoint
