"""JSON of the embedding page (``/embedding``): a t-SNE or PCA map of a layer over a served dataset
(Embedding, streamed and cancellable, cached on the server), with the lab's image placed on it."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import StreamingResponse

from web.api.lab import DIGEST, note
from web.errors import WebError, json_body
from web.explorer import Explorer, explorer_of
from web.pngs import data_url
from web.streaming import Events, call_kwargs, event_stream, relayed

METHODS = ("tsne", "pca")
SCATTER_SIDE, SCATTER_MARGIN = 800, 12  # the service's scatter square (interp.embedding.scatter_image)


def scatter_points(coordinates: np.ndarray, ids: Sequence[int] | np.ndarray) -> list[list[int]]:
    """Each point's pixel (x, y) on the service's scatter PNG and its dataset position, mapped as
    ``interp.embedding._to_pixels`` draws them (aspect kept, y up), so a click finds its point."""
    coords = coordinates.astype(np.float64)
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    scale = (SCATTER_SIDE - 2 * SCATTER_MARGIN) / (float(max(hi[0] - lo[0], hi[1] - lo[1])) or 1.0)
    xy = np.round((coords - (lo + hi) / 2) * scale * [1, -1] + SCATTER_SIDE / 2).astype(int)
    return [[int(x), int(y), int(i)] for (x, y), i in zip(xy, ids, strict=True)]
NAME = re.compile(r"^[\w.\-]{1,200}$")


def embedding_events(explorer: Explorer, values: dict[str, Any], digest: str, stop: threading.Event) -> Events:
    result = yield from relayed(explorer.client.iter_embedding(**values), stop)
    if result is None:
        return  # the page went away: the call is cancelled
    body: dict[str, Any] = {
        "type": "result",
        "dataset": result.dataset,
        "layer": result.layer,
        "method": result.method,
        "points": int(result.coordinates.shape[0]),
        "classes": list(result.classes),
        "reused": result.reused,
        "seconds": result.seconds,
        "scatter": data_url(result.scatter_png),
        "atlas": data_url(result.atlas_png),
        "points_px": scatter_points(result.coordinates, result.image_ids),
        "params": result.params,
        "python": explorer.code("embedding", (values["model"],), call_kwargs(values, result.params)),
        "placed": None,
    }
    if digest:
        placement = explorer.client.place_images([explorer.upload(digest)], **values)
        spot = placement.placed[0]
        python = explorer.code("place_images", (["image.png"],), values, image_note=note(digest))
        body["placed"] = {"x": spot.x, "y": spot.y, "label": spot.label_name, "neighbors": list(spot.neighbor_ids[:8]),
                          "scatter": data_url(placement.scatter_png), "python": python}  # fmt: skip
    yield body


async def run(request: Request) -> StreamingResponse:
    """POST ``{model, dataset, layer, method, limit, image}`` -> the Embedding stream (then the placement)."""
    explorer = explorer_of(request)
    body = await json_body(request)
    for name in ("model", "dataset", "layer"):
        if not isinstance(body.get(name), str) or not NAME.match(body[name]):
            raise WebError("INVALID_ARGUMENT", f"choose a {name}", field=name)
    method = body.get("method") or "pca"
    if method not in METHODS:
        raise WebError("INVALID_ARGUMENT", f"method must be one of {', '.join(METHODS)}", field="method")
    limit = body.get("limit")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise WebError("INVALID_ARGUMENT", "limit must be a positive number of images", field="limit")
    digest = body.get("image") or ""
    if digest and (not isinstance(digest, str) or not DIGEST.match(digest)):
        raise WebError("INVALID_ARGUMENT", "image must be an upload's sha256", field="image")
    values = {"model": body["model"], "dataset": body["dataset"], "layer": body["layer"], "method": method,
              "limit": limit}  # fmt: skip
    return event_stream(lambda stop: embedding_events(explorer, values, digest, stop))
