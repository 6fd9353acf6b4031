"""Dataset-level views: ListDatasets, BuildIndex (the activation index, streamed), TopActivations
and NearestNeighbors (both read an index), DatasetImages (images by position or class) and
ListPrecomputed (what the offline jobs stored)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import torch

from interp import rendering
from interp.attribution.unit_projection import unit_guided_backprop
from interp.dataset import crops as di
from interp.dataset import neighbours
from interp.dataset.index import BuildIndexParams, default_layers
from interp.progress import StepEvent
from models.dataset_registry import UnknownDataset
from models.datasets import DatasetError, DatasetNotFound
from models.loaded import LoadedModel
from protos import interp_pb2 as pb
from server import budgets, convert
from server.context import Ctx
from server.errors import BadRequest
from server.handlers.base import Streamed, dataset_named, flag, handler, input_echo, labelled, png_of
from server.stores.atlas import list_folders
from server.stores.index import IndexUnavailable, base_key, default_batch, images_by_id, served_model


@handler("ListDatasets", model="none")
def list_datasets(ctx: Ctx, request: pb.ListDatasetsRequest, params: None) -> pb.ListDatasetsResponse:
    registry = ctx.services.datasets
    out = []
    for name in registry.names():
        dataset = registry.get(name)
        try:
            size, manifest, native = dataset.size, dataset.manifest(), dataset.native_shape()
        except (DatasetNotFound, DatasetError, OSError):
            continue  # not installed on this server: not indexable, not listed
        fits = [m.spec.name for m in ctx.hub.all() if native is not None and tuple(m.spec.input_shape) == native]
        out.append(
            pb.DatasetInfo(
                name=name,
                size=size,
                classes=list(dataset.classes),
                fits_models=fits,
                manifest_sha256=manifest.partition(":")[2],
                kind=dataset.kind,
            )
        )
    return pb.ListDatasetsResponse(datasets=out)


def _index_layers(ctx: Ctx, names: Sequence[str]) -> list[str]:
    if not names:
        return default_layers(ctx.module)
    layers = [ctx.layer(name, field=f"layers[{i}]") for i, name in enumerate(names)]
    return list(dict.fromkeys(layers))


def _resolve_build(params: BuildIndexParams, model: LoadedModel, request: pb.BuildIndexRequest) -> BuildIndexParams:
    if request.params.HasField("batch_size"):
        if params.batch_size < 1:
            raise BadRequest(f"batch_size must be >= 1, got {params.batch_size}", field="params.batch_size")
        return params
    return dataclasses.replace(params, batch_size=default_batch(model.spec.input_shape[1]))


@handler("BuildIndex", params=BuildIndexParams, resolve=_resolve_build)
def build_index(ctx: Ctx, request: pb.BuildIndexRequest, params: BuildIndexParams) -> Streamed:
    side = ctx.model.spec.input_shape[1]
    ctx.check_work("BuildIndex", batch=params.batch_size, side=side, steps=1)
    dataset = dataset_named(ctx, request.dataset)
    layers = _index_layers(ctx, request.layers)
    model = ctx.model
    store = ctx.services.index_store
    infos = [ctx.layer_info(path) for path in layers]
    widths = [budgets.feature_width(i) for i in infos]
    cost = budgets.index_cost(model, dataset.size, widths, sum(i.channels for i in infos), params.k, params.batch_size)
    ctx.check_job("BuildIndex", cost, "index fewer layers, a smaller k, or a smaller dataset")

    def run(on_step: Callable[..., None], should_stop: Callable[[], bool]) -> object:
        def progress(p: Any) -> None:
            on_step(StepEvent(p.images_done, p.total, p.images_per_s, p.elapsed_s, "indexing"))

        return store.build(
            ctx.module,
            **served_model(model),
            dataset=dataset,
            layers=layers,
            k=params.k,
            batch_size=params.batch_size,
            device=ctx.device,
            on_progress=progress,
            should_stop=should_stop,
        )

    def finish(result: Any) -> pb.BuildIndexResult:
        stored, reused, figures = result
        meta = stored.meta
        return pb.BuildIndexResult(
            dataset=dataset.name,
            index_id=stored.folder,
            layers=meta["layers"],
            images=int(meta["indexed"]),
            skipped=int(meta.get("skipped", 0)),
            reused=reused,
            seconds=float(figures.get("seconds", 0.0)),
            images_per_s=float(figures.get("images_per_s", meta.get("images_per_s", 0.0))),
            peak_rss_growth_mb=float(figures.get("peak_rss_growth_mb", 0.0)),
            resolved=convert.params_to_proto(params, pb.BuildIndexParams),
        )

    return Streamed(run, finish)


def _stored_index(ctx: Ctx, dataset: Any, layer: str, k: int, requested_layer: str) -> Any:
    model = ctx.model
    base = base_key(model.weights.sha256, dataset.manifest(), model.spec.preprocessing)
    stored = ctx.services.index_store.find(base, layer, k)
    if stored is None:
        raise IndexUnavailable(
            f"no index of {dataset.name} for {model.spec.name} holds layer {requested_layer} with k >= {k}; "
            f"build one first: BuildIndex (CLI: interp index {model.spec.name} {dataset.name}"
            + (f" --k {k}" if k > 64 else "")
            + ")"
        )
    return stored


@handler("TopActivations")
def top_activations(ctx: Ctx, request: pb.TopActivationsRequest, params: None) -> pb.TopActivationsResponse:
    dataset = dataset_named(ctx, request.dataset)
    path = ctx.layer(request.layer, field="layer")
    info = next(i for i in ctx.model.layers if i.name == path)
    k = request.k if request.HasField("k") else 9
    pngs = request.entry_pngs if request.HasField("entry_pngs") else False
    projections = request.projections if request.HasField("projections") else False
    channels = list(request.channels) or list(range(min(16, info.channels)))
    for i, c in enumerate(channels):
        if not 0 <= c < info.channels:
            raise BadRequest(
                f"channel {c} out of range for {path}: valid 0..{info.channels - 1}", field=f"channels[{i}]"
            )
    if projections:
        cost = budgets.projections_cost(ctx.model, len(channels) * k)
        ctx.check_job("TopActivations", cost, "ask for fewer channels or a smaller k with projections")
    stored = _stored_index(ctx, dataset, path, k, request.layer)
    values, ids, ys, xs = stored.top(path)
    spatial = info.rf_size is not None and len(info.output_shape) == 3
    wanted = sorted({int(i) for c in channels for i in ids[c, :k] if i >= 0})
    images = dict(zip(wanted, images_by_id(dataset, ctx.model.spec.preprocessing, wanted), strict=True))
    side = ctx.model.spec.input_shape[1]
    scale = max(1, 56 // side)  # the whole image with its box: 56 px for LeNet (PNG encoding dominates)
    out, rows, row_labels = [], [], []
    cell_scale = max(1, 48 // (info.rf_size if spatial and info.rf_size else side))
    # Per image once, not per entry: the pixels and their 8-bit RGB zero-padded by a receptive field
    # on every side (the padding is crop_field's fill, 0), so each crop is a slice.
    pad = int(info.rf_size) if spatial and info.rf_size else 0
    padded: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for image_id, image in images.items():
        pixels = image.numpy()
        c_, h_, w_ = pixels.shape
        wide = np.zeros((c_, h_ + 2 * pad, w_ + 2 * pad), dtype=np.float32)
        wide[:, pad : pad + h_, pad : pad + w_] = pixels
        rgb = np.zeros((h_ + 2 * pad, w_ + 2 * pad, 3), dtype=np.uint8)
        rgb[pad : pad + h_, pad : pad + w_] = _rgb(rendering.to_uint8_image(pixels))
        padded[image_id] = (wide, rgb)
    for c in channels:
        entries, cells = [], []
        for j in range(k):
            image_id = int(ids[c, j])
            if image_id < 0:
                break
            image = images[image_id]
            _, h, w = image.shape
            if spatial and info.rf_size and info.rf_jump and info.rf_start is not None:
                box = di.receptive_box(info.rf_size, info.rf_jump, info.rf_start, int(ys[c, j]), int(xs[c, j]))
            else:
                box = di.Box(0, 0, h, w)
            wide, rgb = padded[image_id]
            crop = wide[:, box.y0 + pad : box.y1 + pad, box.x0 + pad : box.x1 + pad]
            is_padded = di.clip_box(box, h, w) != box
            crop_rgb = rgb[box.y0 + pad : box.y1 + pad, box.x0 + pad : box.x1 + pad]
            big = cv2.resize(crop_rgb, None, fx=cell_scale, fy=cell_scale, interpolation=cv2.INTER_NEAREST)
            if is_padded:
                big = di.mark_padding(big, box, h, w, cell_scale)
            cells.append(big)
            entries.append(
                pb.TopEntry(
                    image_id=image_id,
                    **labelled(dataset, image_id),
                    value=float(values[c, j]),
                    y=int(ys[c, j]),
                    x=int(xs[c, j]),
                    box=pb.Box(y0=box.y0, x0=box.x0, y1=box.y1, x1=box.x1),
                    padded=is_padded,
                    crop=convert.tensor(crop),
                )
            )
            if pngs:
                entries[-1].crop_png = di.fast_png(rendering.to_uint8_image(crop))
                entries[-1].image_png = di.fast_png(di.draw_box(_rgb(rendering.to_uint8_image(image)), box, scale))
        out.append(pb.ChannelTop(channel=c, entries=entries))
        if cells:
            rows.append(cells)
            row_labels.append(str(c))
    if projections:
        _add_projections(ctx, path, out, images)
    return pb.TopActivationsResponse(
        dataset=dataset.name,
        layer=path,
        index_id=stored.folder,
        spatial=spatial,
        rf_size=int(info.rf_size) if spatial and info.rf_size else 0,
        channels=out,
        grid_png=rendering.encode_png(di.top_grid(rows, row_labels)) if rows else b"",
    )


def _add_projections(ctx: Ctx, path: str, channels: list[Any], images: dict[int, torch.Tensor]) -> None:
    """Each entry's guided-backprop projection of its unit, cut to its receptive-field box (one batch)."""
    entries = [(top.channel, e) for top in channels for e in top.entries]
    if not entries:
        return
    ctx.check_work("TopActivations", batch=len(entries), side=ctx.model.spec.input_shape[1], steps=1)
    device = ctx.device
    x = torch.stack([images[e.image_id] for _, e in entries]).to(device)
    units = torch.tensor([(c, e.y, e.x) for c, e in entries], dtype=torch.int64, device=device)
    maps = unit_guided_backprop(ctx.module, x, path, units[:, 0], units[:, 1], units[:, 2]).cpu()
    for (_, entry), projection in zip(entries, maps, strict=True):
        box = di.Box(entry.box.y0, entry.box.x0, entry.box.y1, entry.box.x1)
        entry.projection.CopyFrom(convert.tensor(di.crop_field(projection, box)[0]))


def _rgb(image: np.ndarray) -> np.ndarray:
    return (
        image if image.ndim == 3 and image.shape[2] == 3 else np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=2)
    )


@handler("NearestNeighbors")
def nearest_neighbors(ctx: Ctx, request: pb.NearestNeighborsRequest, params: None) -> pb.NearestNeighborsResponse:
    dataset, path, metric = dataset_named(ctx, request.dataset), ctx.layer(request.layer), ctx.choice("metric")
    cost = budgets.neighbours_cost(dataset.size, budgets.feature_width(ctx.layer_info(path)), 1)
    ctx.check_job("NearestNeighbors", cost, "query a narrower layer")
    x, stored = ctx.input(request.image), _stored_index(ctx, dataset, path, 1, request.layer)
    query = neighbours.query_features(ctx.module, x, path).cpu()
    k, valid = request.k if request.HasField("k") else 10, torch.from_numpy(stored.present)
    order, dist = neighbours.nearest(torch.from_numpy(stored.features(path)), query, k, metric, valid=valid)
    found = [(int(i), float(d)) for i, d in zip(order[0], dist[0].tolist(), strict=True) if np.isfinite(d)]
    images = images_by_id(dataset, ctx.model.spec.preprocessing, [i for i, _ in found])
    pngs = flag(request, "include_pngs", True)
    neighbors = [
        pb.Neighbor(image_id=i, distance=d, **labelled(dataset, i), image=convert.tensor(image),
                    png=png_of(image) if pngs else b"")
        for (i, d), image in zip(found, images, strict=False)
    ]  # fmt: skip
    reply = pb.NearestNeighborsResponse(
        dataset=dataset.name, layer=path, metric=metric, index_id=stored.folder, neighbors=neighbors
    )
    if flag(request, "include_input", True):
        reply.input.CopyFrom(input_echo(x[0], png=pngs))
    if pngs:
        # Two lines (class, distance) fit a LeNet cell; float32 rounding leaves ~1e-16 for the image itself.
        shown = [n.distance if n.distance > 1e-6 else 0.0 for n in neighbors]
        labels = ["query"] + [f"{n.label_name or n.image_id}\n{d:.2g}" for n, d in zip(neighbors, shown, strict=True)]
        reply.grid_png = rendering.encode_png(rendering.image_grid(torch.stack([x[0].cpu(), *images]), labels=labels))
    return reply


@handler("DatasetImages")
def dataset_images(ctx: Ctx, request: pb.DatasetImagesRequest, params: None) -> pb.DatasetImagesResponse:
    dataset = dataset_named(ctx, request.dataset)
    ids = [int(p) for p in request.positions]
    for i, position in enumerate(ids):
        if not 0 <= position < dataset.size:
            raise BadRequest(f"position {position} is out of range for {dataset.name}: valid 0..{dataset.size - 1}",
                             field=f"positions[{i}]")  # fmt: skip
    if ids and (request.HasField("label") or request.HasField("limit") or request.offset):
        raise BadRequest("give positions, or a page (label, offset, limit), not both", field="positions")
    total = len(ids)
    if not ids:
        matching = np.arange(dataset.size)
        if request.HasField("label"):
            if not 0 <= request.label < len(dataset.classes):
                raise BadRequest(f"label {request.label} is not a class of {dataset.name}: valid "
                                 f"0..{len(dataset.classes) - 1}", field="label")  # fmt: skip
            matching = np.flatnonzero(dataset.labels() == request.label)
        if request.offset < 0:
            raise BadRequest(f"offset must be >= 0, got {request.offset}", field="offset")
        limit = request.limit if request.HasField("limit") else min(24, ctx.limits.max_images_per_call)
        ids, total = [int(i) for i in matching[request.offset : request.offset + limit]], len(matching)
    values = math.prod(ctx.model.spec.input_shape)  # each image: float32 values and an 8-bit PNG at most
    ctx.check_budget("DatasetImages", len(ids) * values * 5)
    images = images_by_id(dataset, ctx.model.spec.preprocessing, ids)
    out = [pb.DatasetImage(position=i, **labelled(dataset, i), image=convert.tensor(image), png=png_of(image))
           for i, image in zip(ids, images, strict=True)]  # fmt: skip
    return pb.DatasetImagesResponse(dataset=dataset.name, images=out, total=total, classes=list(dataset.classes))


@handler("ListPrecomputed")
def list_precomputed(ctx: Ctx, request: pb.ListPrecomputedRequest, params: None) -> pb.ListPrecomputedResponse:
    """What interp-atlas and interp-robustness stored for this model's weights, beside the index."""
    sha = ctx.model.weights.sha256
    layer = ctx.layer(request.layer, field="layer") if request.layer else ""
    if request.dataset:
        dataset_named(ctx, request.dataset)  # a dataset this server does not serve is refused, named
    reply = pb.ListPrecomputedResponse()
    if ctx.services.atlas is not None:
        for found in list_folders(ctx.services.atlas.root, sha, layer):
            reply.atlas.append(
                pb.AtlasLayer(
                    layer=found.layer,
                    resolved=convert.params_to_proto(SimpleNamespace(**found.params), pb.VisualizeFilterParams),
                    batch=found.batch,
                    dataset=found.dataset,
                    units=found.units,
                    batches=[pb.AtlasBatch(channels=b) for b in found.batches],
                )
            )
    if ctx.services.results is not None:
        manifests: dict[str, str | None] = {}
        for meta, body in ctx.services.results.stored(sha, request.dataset):
            name = str(meta.get("dataset", ""))
            if name not in manifests:
                manifests[name] = _manifest(ctx, name)
            if meta.get("manifest") not in (None, manifests[name]):
                continue  # the dataset's files changed since: not this dataset's result any more
            result = pb.AttackDatasetResult.FromString(body)
            result.precomputed = True
            reply.robustness.append(
                pb.StoredRobustness(result=result, limit=int(meta.get("limit", 0)), engine=str(meta.get("engine", "")))
            )
    return reply


def _manifest(ctx: Ctx, name: str) -> str | None:
    try:
        return ctx.services.datasets.get(name).manifest()
    except (UnknownDataset, DatasetNotFound, DatasetError, OSError):
        return None
