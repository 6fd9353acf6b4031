"""Embeddings: Embedding (a t-SNE or PCA map of a layer's features over a dataset, streamed) and
PlaceImages (new images on a cached map). Which parameters each method reads is the method
table's ``applies``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from interp import rendering
from interp.dataset import neighbours as di
from interp.embedding import EmbeddingParams, embed, min_points, place, scatter_image
from interp.progress import StepEvent
from protos import interp_pb2 as pb
from server import budgets, convert
from server.context import Ctx
from server.errors import BadRequest
from server.handlers.base import Streamed, dataset_named, handler, label_fields
from server.stores.index import DEFAULT_K, base_key, default_batch
from server.stores.maps import MAX_THUMBNAILS, CachedMap, MapUnavailable, map_key, render, thumbnails_of


@dataclass(frozen=True)
class _MapRequest:
    dataset: Any
    path: str
    method: str
    points: int  # the first `points` dataset ids (fewer on the map when some are unreadable)
    params: Any
    key: str


def _map_request(ctx: Ctx, request: Any, params: Any) -> _MapRequest:
    """What names a map (Embedding and PlaceImages alike), checked before any work."""
    method = ctx.choice("method")
    dataset = dataset_named(ctx, request.dataset)
    path = ctx.layer(request.layer, field="layer")
    width = budgets.feature_width(ctx.layer_info(path))
    if width < 2:
        raise BadRequest(
            f"layer {path} gives {width} feature per image (a conv layer's maps are averaged over space: one "
            "value a channel), and a map needs at least 2: choose a layer with more channels",
            field="layer",
        )
    size = dataset.size
    cap = ctx.limits.max_embedding_points
    if request.HasField("limit"):
        points = min(request.limit, size)
    elif size > cap:
        raise BadRequest(
            f"{dataset.name} has {size:,} images, above this server's max_embedding_points={cap:,}: "
            f"set limit to at most {cap:,}",
            field="limit",
        )
    else:
        points = size
    if method == "tsne":
        if points < 4:
            raise BadRequest(f"t-SNE needs at least 4 points, got {points}", field="limit")
        if params.perplexity * 3 >= points:
            raise BadRequest(
                f"perplexity {params.perplexity:g} must be below N / 3 = {points / 3:.4g} for N = {points} points "
                f"(lower the perplexity, or use at least {min_points(params.perplexity)} points)",
                field="params.perplexity",
            )
        if params.pca_dims < 2:
            raise BadRequest(f"pca_dims must be at least 2, got {params.pca_dims}", field="params.pca_dims")
    elif points < 2:
        raise BadRequest(f"a PCA map needs at least 2 points, got {points}", field="limit")
    model = ctx.model
    key = map_key(
        weights_sha256=model.weights.sha256,
        manifest=dataset.manifest(),
        preprocessing=model.spec.preprocessing,
        layer=path,
        method=method,
        points=points,
        params=params,
        threads=torch.get_num_threads(),
    )
    return _MapRequest(dataset, path, method, points, params if method == "tsne" else None, key)


def _map_cost(ctx: Ctx, req: _MapRequest, params: EmbeddingParams, batch_size: int) -> tuple[budgets.JobCost, str]:
    """The map's PCA and t-SNE, after the index pass that gives its features when none is stored;
    and what to do when that is over the server's job budget."""
    model, info = ctx.model, ctx.layer_info(req.path)
    width, iterations = budgets.feature_width(info), params.early_iterations + params.iterations
    cost = budgets.map_cost(req.points, width, req.method, params.pca_dims, iterations, params.perplexity)
    base = base_key(model.weights.sha256, req.dataset.manifest(), model.spec.preprocessing)
    if ctx.services.index_store.find(base, req.path, 1) is not None:
        return cost, "use fewer points (limit)" + (" or iterations" if req.method == "tsne" else "")
    index = budgets.index_cost(model, req.dataset.size, [width], info.channels, DEFAULT_K, batch_size)
    advice = (
        f"the map's features come from an index pass over all {req.dataset.size:,} images of {req.dataset.name}, "
        f"whatever the limit: build that index offline (interp-index {model.spec.name} {req.dataset.name} "
        f"--layers {req.path}), or ask the operator for a larger --max-job-gmacs / --max-job-mb"
    )
    return budgets.then(index, cost), advice


@handler("Embedding", params=EmbeddingParams)
def embedding(ctx: Ctx, request: pb.EmbeddingRequest, params: EmbeddingParams) -> Streamed:
    req = _map_request(ctx, request, params)
    model, module = ctx.model, ctx.module
    store = ctx.services.index_store
    side = model.spec.input_shape[1]
    batch_size = default_batch(side)
    ctx.check_job("Embedding", *_map_cost(ctx, req, params, batch_size))
    threads = torch.get_num_threads()

    def run(on_step: Callable[..., None], should_stop: Callable[[], bool]) -> object:
        def make() -> CachedMap:
            base = base_key(model.weights.sha256, req.dataset.manifest(), model.spec.preprocessing)
            stored = store.find(base, req.path, 1)
            if stored is None:  # the features come from the index pass, never from a second extractor

                def progress(p: Any) -> None:
                    on_step(StepEvent(p.images_done, p.total, p.images_per_s, p.elapsed_s, "features"))

                stored, _, _ = store.build(
                    module,
                    model_name=model.spec.name,
                    weights_sha256=model.weights.sha256,
                    spec=model.spec.preprocessing,
                    dataset=req.dataset,
                    layers=[req.path],
                    k=DEFAULT_K,
                    batch_size=batch_size,
                    device=ctx.device,
                    on_progress=progress,
                    should_stop=should_stop,
                )
            present = stored.present[: req.points]
            ids = np.flatnonzero(present).astype(np.int64)
            features = np.asarray(stored.features(req.path)[ids], dtype=np.float32)
            emap = embed(
                features,
                req.method,
                req.params or EmbeddingParams(),
                threads=threads,
                on_step=on_step,
                should_stop=should_stop,
            )
            labels = np.asarray(req.dataset.labels(), dtype=np.int64)[ids]
            thumbs = thumbnails_of(req.dataset, model.spec.preprocessing, ids[:MAX_THUMBNAILS])
            title = f"{model.spec.name} {req.path} on {req.dataset.name}: {req.method}, {len(ids):,} points"
            scatter, atlas, tiles, columns = render(emap, labels, tuple(req.dataset.classes), thumbs, title)
            return CachedMap(
                key=req.key,
                emap=emap,
                ids=ids,
                labels=labels,
                classes=tuple(req.dataset.classes),
                index_id=stored.folder,
                thumbnails=thumbs,
                scatter_png=scatter,
                atlas_png=atlas,
                sprite_png=tiles,
                sprite_columns=columns,
            )

        return ctx.services.maps.get_or_make(req.key, make, should_stop)

    def finish(result: Any) -> pb.EmbeddingResult:
        cached, reused = result
        emap = cached.emap
        thumbs = cached.thumbnails
        return pb.EmbeddingResult(
            dataset=req.dataset.name,
            layer=req.path,
            method=req.method,
            coordinates=convert.tensor(emap.coordinates),
            image_ids=cached.ids.tolist(),
            labels=cached.labels.tolist(),
            classes=list(cached.classes),
            scatter_png=cached.scatter_png,
            atlas_png=cached.atlas_png,
            thumbnails_png=cached.sprite_png,
            thumbnail_size=int(thumbs.shape[1]) if len(thumbs) else 0,
            thumbnail_columns=cached.sprite_columns,
            thumbnail_count=len(thumbs),
            kl_divergence=emap.kl_divergence,
            explained_variance=emap.pca.explained_variance_ratio.tolist(),
            reused=reused,
            map_id=cached.key[:16],
            index_id=cached.index_id,
            seconds=0.0 if reused else emap.seconds,
            threads=emap.threads if req.method == "tsne" else 0,
            resolved=convert.params_to_proto(
                req.params, pb.EmbeddingParams, only=ctx.applies
            ) if req.params is not None else pb.EmbeddingParams(),
        )  # fmt: skip

    return Streamed(run, finish)


@handler("PlaceImages", params=EmbeddingParams)
def place_images(ctx: Ctx, request: pb.PlaceImagesRequest, params: EmbeddingParams) -> pb.PlaceImagesResponse:
    req = _map_request(ctx, request, params)
    cached = ctx.services.maps.get(req.key)
    if cached is None:
        model = ctx.model
        limit = f" --limit {request.limit}" if request.HasField("limit") else ""
        method = "" if req.method == "tsne" else f" --method {req.method}"
        raise MapUnavailable(
            f"no {req.method} map of {req.dataset.name} at {req.path} for {model.spec.name} with these parameters "
            f"is cached on this server; make it first with the same request: Embedding (CLI: interp embed "
            f"{model.spec.name} {req.dataset.name} --layer {request.layer}{method}{limit} -o map.png)"
        )
    cost = budgets.place_cost(ctx.model, len(request.images), len(cached.ids))
    ctx.check_job("PlaceImages", cost, "place fewer images")
    inputs = [ctx.input(image, f"images[{i}]") for i, image in enumerate(request.images)]
    x = torch.cat(inputs)
    features = di.query_features(ctx.module, x, req.path).cpu().numpy()
    placement = place(cached.emap, features)
    placed = []
    for i in range(len(inputs)):
        rows = placement.neighbor_ids[i]
        labels = cached.labels[rows]
        known = labels[labels >= 0]
        label = int(np.bincount(known).argmax()) if len(known) else -1
        placed.append(
            pb.PlacedImage(
                x=float(placement.coordinates[i, 0]),
                y=float(placement.coordinates[i, 1]),
                neighbor_ids=cached.ids[rows].tolist(),
                neighbor_labels=labels.tolist(),
                neighbor_distances=placement.neighbor_distances[i].tolist(),
                **label_fields(cached.classes, label),
                input=ctx.input_message(inputs[i]),
            )
        )
    picture = scatter_image(
        cached.emap.coordinates,
        cached.labels,
        cached.classes,
        title=f"{len(inputs)} placed image(s): black rings",
        marks=placement.coordinates,
    )
    return pb.PlaceImagesResponse(
        dataset=req.dataset.name,
        layer=req.path,
        method=req.method,
        map_id=cached.key[:16],
        placed=placed,
        scatter_png=rendering.encode_png(picture),
        resolved=convert.params_to_proto(req.params, pb.EmbeddingParams, only=ctx.applies)
        if req.params is not None
        else pb.EmbeddingParams(),
    )
