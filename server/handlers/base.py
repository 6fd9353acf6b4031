"""What every handler module shares: the registry (:func:`handler`, :data:`HANDLERS`), the shape
of a streamed handler's work (:class:`Streamed`) and the many-images path of single-pass methods.

A handler is registered with :func:`handler` and receives a :class:`server.context.Ctx`, the
request and the resolved parameters (the ``interp`` dataclass, or None for a method without
Params). A unary handler returns the reply message; a streamed one returns :class:`Streamed`
(the loop to run on a worker and the conversion of its result). Everything else (model
readiness, caps, required fields and choices, params resolution with defaults, error mapping,
capacity, stamping, streaming) is the shared path in ``server/servicer.py``, driven by the method
table (``protos/methods.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from interp import rendering
from models.dataset_registry import Dataset, UnknownDataset
from models.loaded import LoadedModel
from protos import interp_pb2 as pb
from server import convert
from server.context import Ctx
from server.errors import BadRequest

Resolver = Callable[[Any, LoadedModel, Any], Any]


@dataclass(frozen=True)
class Streamed:
    """A streamed handler's work: ``run(on_step=, should_stop=)`` on a worker, then ``finish(result)``.

    ``run`` is called with those two keywords, so an interp function that takes them is its own
    ``run`` once its other arguments are bound (``functools.partial``).
    """

    run: Callable[..., object]
    finish: Callable[[Any], Any]
    # The largest activation one step computes, all its images (Ctx.elements): below torch's
    # grain size the loop runs on one torch thread (server.threads); 0: the server's threads.
    elements: int = 0


class Live(Protocol):
    """A live handler's session (``Method.live``), made from the stream's first message.

    ``accept(message)`` runs on the reader thread for every message in order (the first
    included): it applies the message's settings and returns ``(item, is_frame)`` to answer, or
    None when nothing is to be answered; it never raises (a refused message becomes an item whose
    answer carries the error). ``answer(item, skipped)`` computes one answer on the stream's thread.
    """

    def accept(self, message: Any) -> tuple[Any, bool] | None: ...

    def answer(self, item: Any, skipped: int) -> Any: ...


@dataclass(frozen=True)
class Handler:
    fn: Callable[..., Any]
    params: type | None = None  # the interp dataclass of the Params message
    resolve: Resolver | None = None  # model-dependent defaults: (params, model, request) -> params
    model: str = "ready"  # "ready": the request's model must be READY; "any": served; "none": no model
    # The Params fields this request reads when that depends on more than its method (the table's
    # ``Method.applies``, which wins when it has an entry); the others are neither capped by their
    # defaults nor echoed.
    applies: Callable[[Any], Sequence[str]] | None = None
    # The handler computes through ``ctx.batched`` (micro-batching; it holds the capacity slot
    # per batch for heavy methods, so the servicer does not hold one for the whole call).
    batched: bool = False


HANDLERS: dict[str, Handler] = {}


def handler(
    rpc: str,
    *,
    params: type | None = None,
    resolve: Resolver | None = None,
    model: str = "ready",
    applies: Callable[[Any], Sequence[str]] | None = None,
    batched: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if rpc in HANDLERS:
            raise ValueError(f"two handlers for {rpc}")
        HANDLERS[rpc] = Handler(fn, params, resolve, model, applies, batched)
        return fn

    return register


# -- many images per call ------------------------------------------------------------------------


def flag(request: Any, name: str, default: bool) -> bool:
    """An ``include_*`` request flag, ``default`` when unset."""
    return bool(getattr(request, name)) if request.HasField(name) else default


def input_echo(x: torch.Tensor, png: bool) -> pb.PreprocessedInput:
    """One preprocessed input (C, H, W) as sent back: the tensor, and its PNG when ``png``."""
    image = x.detach().cpu()
    encoded = png_of(image) if png else b""
    return pb.PreprocessedInput(tensor=convert.tensor(image), png=encoded)


def png_of(image: torch.Tensor | np.ndarray) -> bytes:
    """The PNG of one image (C, H, W) in [0, 1]."""
    return rendering.encode_png(rendering.to_uint8_image(image))


def label_fields(classes: Sequence[str], label: int) -> dict[str, Any]:
    """``label`` and ``label_name`` of a reply entry ("" for -1, unlabelled, or a label past ``classes``)."""
    return {"label": label, "label_name": classes[label] if 0 <= label < len(classes) else ""}


def labelled(dataset: Dataset, image_id: int) -> dict[str, Any]:
    """:func:`label_fields` of a dataset image."""
    return label_fields(dataset.classes, int(dataset.labels()[image_id]))


Fill = Callable[[torch.Tensor, list[Any], Callable[[], bool]], None]


def per_image(ctx: Ctx, request: Any, reply_cls: type[Any], run: Fill, batch_key: Hashable | None = None) -> Any:
    """The single-image form (``image``) or many images (``images``), through the same ``run``.

    ``run(x, out, should_stop)`` takes a (B, C, H, W) batch of preprocessed inputs and fills ``out[i]``, an
    empty reply message, with the answer for image i, computed as if that image had come alone
    (the ``interp`` functions work per image on a batch). The replies are filled where they will
    be sent (a many-image answer's ``items``), not built and copied: for 256 LeNet answers the
    copies cost as much as the forward. Every image gets the input a single call would give it
    (resized to the model's input), so images of different sizes share a batch; runs of raw
    arrays of one dtype and shape are decoded as one stack (:meth:`Ctx.inputs`; 256 LeNet arrays
    in about 1 ms instead of 20 ms). Many images are decoded and computed in chunks of at most
    ``max_batch_pixels`` input pixels, which bounds the memory of one call; an image that cannot
    be read gets an ``ItemError`` in its place and the others go on.

    A single image with a ``batch_key`` (everything but the image its answer depends on) may be
    computed in one micro-batch with concurrent calls of the same key (:meth:`Ctx.batched`); a
    many-image call is its own batch.
    """
    images = request.images
    if not images:
        x = ctx.input(request.image)

        def compute(xb: torch.Tensor, extras: Sequence[Any], should_stop: Callable[[], bool]) -> list[Any]:
            out = [reply_cls() for _ in extras]
            run(xb, out, should_stop)
            return out

        return ctx.batched(batch_key, x, None, compute)
    if request.HasField("image"):
        raise BadRequest("give image (one) or images (several), not both", field="images")
    with ctx.own_slot():
        return many(ctx, images, reply_cls, run)


def many(ctx: Ctx, images: Sequence[pb.Image], reply_cls: type[Any], run: Fill) -> Any:
    _, height, width = ctx.model.spec.input_shape
    chunk = max(1, ctx.limits.max_batch_pixels // (height * width))
    reply = reply_cls()
    items = [reply.items.add() for _ in images]
    pending: list[tuple[list[int], torch.Tensor]] = []
    count = 0  # images in pending

    def flush() -> None:
        ctx.check_stop()
        x = pending[0][1] if len(pending) == 1 else torch.cat([x for _, x in pending])
        with ctx.threads(x):
            run(x, [items[position] for positions, _ in pending for position in positions], ctx.should_stop)
        pending.clear()

    start = 0
    while start < len(images):
        # A window that at most fills the chunk: batches hold the same images as when each image
        # was decoded and added in turn, flushing at the chunk-th that decoded.
        end = min(len(images), start + chunk - count)
        pieces, errors = ctx.inputs(images[start:end], first=start)
        for position, error in errors.items():
            items[start + position].error.CopyFrom(error)
        for positions, x in pieces:
            pending.append(([start + p for p in positions], x))
            count += len(positions)
        if count >= chunk:
            flush()
            count = 0
        start = end
    if pending:
        flush()
    return reply


def dataset_named(ctx: Ctx, name: str) -> Dataset:
    """The registered dataset ``name`` (the request's ``dataset``)."""
    datasets = ctx.services.datasets
    if not name:
        raise BadRequest(f"dataset is required; this server has: {', '.join(datasets.names())}", field="dataset")
    try:
        return datasets.get(name)
    except UnknownDataset as exc:
        raise BadRequest(str(exc.args[0]), field="dataset") from None
