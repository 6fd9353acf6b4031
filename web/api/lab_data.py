"""The lab's dataset browser (DatasetImages): a page of a served dataset's images, of one class or
all, as thumbnails; and one image by its position, loaded into the lab like an upload (kept under
the sha256 of its PNG, the model's input), so ``/lab?dataset=D&position=N`` links to it."""

from __future__ import annotations

import hashlib
from typing import Any

from starlette.requests import Request

from web.api.lab import model_of
from web.errors import WebError, query_int
from web.explorer import Explorer, json_endpoint
from web.pngs import data_url

PER_PAGE = 24


def _page(explorer: Explorer, request: Request) -> dict[str, Any]:
    """GET ``?model=M&label=L&page=P&per_page=K``: the page's thumbnails, the total and the class names."""
    model, dataset = model_of(request), request.path_params["dataset"]
    label = query_int(request, "label", -1, low=-1, high=1 << 20)
    page = query_int(request, "page", 0, low=0, high=1 << 30)
    per_page = query_int(request, "per_page", PER_PAGE, low=1, high=96)
    kwargs = {"dataset": dataset, "label": None if label < 0 else label, "offset": page * per_page, "limit": per_page}
    result = explorer.client.dataset_images(model, **kwargs)
    return {
        "dataset": result.dataset,
        "total": result.total,
        "page": page,
        "per_page": per_page,
        "classes": list(result.classes),
        "images": [{"position": i.position, "label": i.label_name, "png": data_url(i.png)} for i in result.images],
        "python": explorer.code("dataset_images", (model,), {k: v for k, v in kwargs.items() if v is not None}),
    }


page = json_endpoint(_page)


def _load(explorer: Explorer, request: Request) -> dict[str, Any]:
    """POST ``/api/lab/datasets/{dataset}/images/{position}?model=M``: the image into the lab's cache
    (as an upload of its PNG); its sha256, its true class and the snippet."""
    model, dataset = model_of(request), request.path_params["dataset"]
    position: int = request.path_params["position"]
    found = explorer.client.dataset_images(model, dataset=dataset, positions=[position]).images
    if not found:
        raise WebError("NOT_FOUND", f"{dataset} has no image at position {position}", field="position")
    item = found[0]
    digest = hashlib.sha256(item.png).hexdigest()
    explorer.uploads.put(digest, item.png)
    kwargs = {"dataset": dataset, "positions": [position]}
    return {
        "image": digest,
        "dataset": dataset,
        "position": position,
        "label": item.label_name,
        "python": explorer.code("dataset_images", (model,), kwargs),
    }


load = json_endpoint(_load)
