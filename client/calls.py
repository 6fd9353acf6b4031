"""Any RPC of the method table by name: the request filled from values, the reply converted.

:class:`RpcClient` owns the channel and the four shapes of a call, read from the table:
``call`` (one request, one reply), ``call_many`` (a many-image RPC over any number of images, in
calls of at most the server's ``max_images_per_call`` images within the message cap),
``call_stream`` (a streamed reply: an :class:`~client.streams.EventStream`). Where the table
marks an RPC's request as a stream (``Method.request_streamed``), ``values`` is an iterable of
request values, each one message, sent as it is read. :class:`client.InterpClient` adds the typed methods over these.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from client.channel import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_TARGET, auth_metadata, channel_options, is_loopback_target
from client.errors import (
    FieldViolation,
    Internal,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
    from_item_error,
    from_rpc_error,
)
from client.images import ImageLike, add_image
from client.requests import Images, build_request, image_items, is_many
from client.results import ITEM_RESULTS, RESULTS
from client.streams import EventStream, ProgressCallback
from protos import interp_pb2 as pb
from protos import interp_pb2_grpc as pb_grpc
from protos.methods import STREAM_OPTION, Method, by_rpc

__all__ = ["RpcClient", "UNSET"]

R = TypeVar("R")


class _Unset:
    def __repr__(self) -> str:
        return "<client default>"


#: Marks "use the client's default timeout" (None already means "no deadline").
UNSET: Any = _Unset()
_UNSET = UNSET


class RpcClient:
    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float | None = 60.0,
        stream_timeout: float | None = None,
        token: str | None = None,
        ca_file: str | os.PathLike | None = None,
        tls: bool = False,
        server_name: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        options: Sequence[tuple[str, Any]] = (),
        cert_file: str | os.PathLike | None = None,
        key_file: str | os.PathLike | None = None,
    ) -> None:
        if not target:
            raise ValueError("target must be 'host:port' or 'dns:///host:port'")
        if (cert_file is None) != (key_file is None):
            raise ValueError("cert_file and key_file go together (the client certificate and its private key)")
        self.target = target
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self._metadata = auth_metadata(token)
        channel_opts = channel_options(
            target, max_message_bytes=max_message_bytes, server_name=server_name, extra=options
        )
        self.tls = bool(tls or ca_file is not None or cert_file is not None)
        if self.tls:
            roots = Path(ca_file).read_bytes() if ca_file is not None else None
            chain = Path(cert_file).read_bytes() if cert_file is not None else None
            key = Path(key_file).read_bytes() if key_file is not None else None
            credentials = grpc.ssl_channel_credentials(
                root_certificates=roots, private_key=key, certificate_chain=chain
            )
            self._channel = grpc.secure_channel(target, credentials, options=channel_opts)
        else:
            if server_name:
                raise ValueError("server_name only applies to TLS; pass ca_file= or tls=True")
            if self._metadata is not None and not is_loopback_target(target):
                warnings.warn(
                    f"sending a bearer token over a plaintext channel to {target}: anyone on the path can read "
                    "it; use TLS (ca_file= or tls=True)",
                    stacklevel=2,
                )
            self._channel = grpc.insecure_channel(target, options=channel_opts)
        self._stub = pb_grpc.InterpStub(self._channel)
        self._cap: int | None = None  # the server's max_images_per_call, asked on the first many-image call
        self._max_message_bytes = int(max_message_bytes)
        self._bytes_cap: int | None = None  # the smaller of ours and the server's message cap, asked with _cap

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self: R) -> R:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"InterpClient({self.target!r}, tls={self.tls}, token={'set' if self._metadata else 'none'})"

    @property
    def channel(self) -> grpc.Channel:
        """The underlying gRPC channel (e.g. for the health service)."""
        return self._channel

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the channel connects; :class:`client.errors.Unavailable` after ``timeout`` seconds."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise Unavailable(f"no server answered at {self.target} within {timeout:g} s") from None

    # -- plumbing ------------------------------------------------------------------------------

    def call(
        self,
        rpc: str,
        values: Mapping[str, Any],
        timeout: float | None = _UNSET,
        *,
        params: Mapping[str, Any] | None = None,
        wrap: bool = True,
    ) -> Any:
        """Any unary RPC of the method table by name: ``c.call("Classify", {"model": "lenet", "image": a})``.

        ``values`` fill request fields by name (converted as in :func:`build_request`), ``params``
        the method's Params message; the reply comes back as its result class (``wrap=False``:
        the raw message). The typed methods above are this, with signatures.
        """
        reply = self._unary(rpc, _requests(by_rpc(rpc), values, params or {}), timeout)
        return RESULTS[rpc](reply) if wrap else reply

    def dataset_class(self, dataset: str, label: int | str) -> int | None:
        """The index of class ``label`` of a served dataset: an int as it is, else a class name (any
        case, or an index as text) looked up in ListDatasets. None when no served dataset has that
        name (a call with it then gets the server's error naming the served ones)."""
        if isinstance(label, int) or label.strip().lstrip("-").isdigit():
            return int(label)
        infos = self._unary("ListDatasets", pb.ListDatasetsRequest(), _UNSET).datasets
        classes = next((list(d.classes) for d in infos if d.name == dataset), None)
        if classes is None:
            return None
        lowered = [c.lower() for c in classes]
        if label.lower() not in lowered:
            raise ValueError(f"label {label!r} is not a class of {dataset}; its classes: {', '.join(classes)}")
        return lowered.index(label.lower())

    def call_many(
        self,
        rpc: str,
        images: Images,
        values: Mapping[str, Any],
        timeout: float | None = _UNSET,
        *,
        params: Mapping[str, Any] | None = None,
    ) -> list[Any]:
        """A many-image RPC (Classify, Activations, Saliency, Attack, MinimalAttack) over any number of images.

        The images (a list, tuple, iterator or (N, H, W[, C]) array; an iterator is read lazily)
        are sent in calls of at most the server's ``max_images_per_call`` images (asked once per
        client with GetServerInfo) and of at most the smaller message cap (the client's
        ``max_message_bytes`` or the server's), each one batched computation on the server. Returns one entry
        per image, in order: its result, or the :class:`client.errors.InterpError` that image
        alone failed with (unreadable or too large; not raised, its ``field`` is ``images[i]``
        counted over all the images given). An error of the call itself (unknown model, bad
        parameter, server unreachable) is raised as for one image. ``timeout`` applies to each call.
        """
        method = by_rpc(rpc)
        convert = ITEM_RESULTS.get(rpc) or _each(RESULTS[rpc])
        results: list[Any] = []
        for request, local in self._batches(method, values, params or {}, images):
            offset = len(results)
            sent = len(request.images)  # type: ignore[attr-defined]  # every many-image request has it
            if not sent:
                results.extend(local)
                continue
            reply = self._unary(rpc, request, timeout)
            if len(reply.items) != sent:
                raise Internal(f"{rpc}: the server answered {len(reply.items)} items for {sent} images")
            failed = [item.HasField("error") for item in reply.items]
            answered = [item for item, bad in zip(reply.items, failed, strict=True) if not bad]
            answers = iter(convert(answered, reply.stamp))
            items = iter(zip(reply.items, failed, strict=True))
            for i, error in enumerate(local):
                if error is not None:
                    results.append(error)
                    continue
                item, bad = next(items)
                if bad:
                    field = f"images[{offset + i}]"
                    results.append(from_item_error(item.error, field=field, request_id=reply.stamp.request_id))
                else:
                    results.append(next(answers))
        return results

    def _one_or_many(
        self,
        rpc: str,
        image: ImageLike | Images,
        values: Mapping[str, Any],
        timeout: float | None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        if is_many(image):
            return self.call_many(rpc, image, values, timeout, params=params)  # type: ignore[arg-type]
        return self.call(rpc, {**values, "image": image}, timeout, params=params)

    def _batches(
        self, method: Method, values: Mapping[str, Any], params: Mapping[str, Any], images: Images
    ) -> Iterator[tuple[Message, list[InvalidArgument | None]]]:
        """The requests of a many-image call, each with at most ``max_images_per_call`` images and
        within the message cap, and per image None or the error that kept it from being sent (a
        missing file, NaN pixels, a wrong shape, an image over the cap alone): such an image fails
        alone, as one the server cannot decode does."""
        cap, budget = self._images_per_call(), self._message_budget()

        def fresh() -> tuple[Message, Any, int]:
            request = build_request(method, values, params, _caller(method))
            return request, request.images, request.ByteSize()  # type: ignore[attr-defined]

        request, entries, size = fresh()
        base = size  # the request's own fields: every call carries them
        local: list[InvalidArgument | None] = []
        index = 0
        for image in image_items(images):
            field = f"images[{index}]"
            index += 1
            error = _add_image(entries, image, field)
            grown = 0 if error is not None else entries[-1].ByteSize() + 16  # the entry, its tag and length
            if base + grown > budget:  # too large even alone
                del entries[-1]
                error = _too_large(field, grown, budget)
            elif size + grown > budget:  # it opens the next call
                last = type(entries[-1])()
                last.CopyFrom(entries[-1])
                del entries[-1]
                yield request, local
                request, entries, size = fresh()
                local = []
                entries.append(last)
            size += 0 if error is not None else grown
            local.append(error)
            if len(local) == cap:
                yield request, local
                request, entries, size = fresh()
                local = []
        if local:
            yield request, local

    def _images_per_call(self) -> int:
        if self._cap is None:
            limits = self.call("GetServerInfo", {}).limits
            self._cap = max(1, int(limits.get("max_images_per_call", 0)) or 1)
            server = int(limits.get("max_message_bytes", 0)) or self._max_message_bytes
            self._bytes_cap = min(server, self._max_message_bytes)
        return self._cap

    def _message_budget(self) -> int:
        """Bytes a many-image request may take: the smaller message cap, less room for gRPC's framing."""
        self._images_per_call()
        return max(1, (self._bytes_cap or self._max_message_bytes) - 1024)

    def call_stream(
        self,
        rpc: str,
        values: Mapping[str, Any] | Iterable[Mapping[str, Any]],
        timeout: float | None = _UNSET,
        params: Mapping[str, Any] | None = None,
        progress: ProgressCallback | None = None,
    ) -> EventStream[Any]:
        """Any streamed RPC of the method table by name, as an :class:`EventStream`.

        ``every_step=True`` among ``params`` (every streamed method takes it) asks for one progress
        event per step; by default the server sends at most its ``progress_events_per_s`` a second
        (plus the first and last step and every preview). ``progress`` is called with each event.
        """
        method = by_rpc(rpc)
        params = dict(params or {})
        option = {STREAM_OPTION: params.pop(STREAM_OPTION)} if STREAM_OPTION in params else {}
        requests = _requests(method, values, params, option)
        stub = getattr(self._stub, rpc)
        deadline = self.stream_timeout if timeout is _UNSET else timeout
        return EventStream(lambda: stub(requests, timeout=deadline, metadata=self._metadata), RESULTS[rpc], progress)

    def _unary(self, rpc: str, request: Message | Iterator[Message], timeout: float | None) -> Any:
        method = getattr(self._stub, rpc)
        deadline = self.timeout if timeout is _UNSET else timeout
        try:
            return method(request, timeout=deadline, metadata=self._metadata)
        except grpc.RpcError as error:
            said = error.details() or ""
            if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "message larger than max" in said:
                raise ResourceExhausted(f"{rpc}: {_over_a_cap(said)} ({said})") from error  # gRPC names no remedy
            raise from_rpc_error(error) from error


def _requests(
    method: Method, values: Any, params: Mapping[str, Any], extra: Mapping[str, Any] | None = None
) -> Message | Iterator[Message]:
    """The request of a call: one message, or for a request stream (``Method.request_streamed``) an
    iterator that builds one message per item of ``values`` as gRPC reads it; ``extra`` fields go
    into each message."""
    extra = extra or {}
    if not method.request_streamed:
        return build_request(method, {**values, **extra}, params, _caller(method))
    if isinstance(values, Mapping):
        raise TypeError(f"{method.sdk_name}(): the request is a stream; give an iterable of request values")
    return (build_request(method, {**v, **extra}, params, _caller(method)) for v in values)


def _over_a_cap(said: str) -> str:
    """What gRPC's "message larger than max" means, by who refused which message."""
    request = "send images as encoded files (PNG, JPEG) or smaller arrays (uint8 rather than float)"
    raise_it = "or raise the SDK's InterpClient(max_message_bytes=...)"
    if "CLIENT: Sent" in said:
        return f"the request is over this client's message cap: {request}, {raise_it}"
    if "SERVER: Received" in said:
        return f"the request is over the server's message cap: {request}"
    if "SERVER: Sent" in said:
        return "the answer is over the server's message cap: ask for less (fewer layers, include_tensors=false)"
    return f"the answer is over this client's message cap: ask for less, {raise_it}"


def _too_large(field: str, size: int, budget: int) -> InvalidArgument:
    text = (f"{field}: {size:,} bytes as sent, over the {budget:,} a request may carry: send the image as an "
            "encoded file (PNG, JPEG) or a smaller array (uint8 rather than float)")  # fmt: skip
    return InvalidArgument(text, field_violations=[FieldViolation(field, text)])


def _add_image(images: Any, image: ImageLike, field: str) -> InvalidArgument | None:
    """Append ``image`` to a request's images; None, or the error that keeps it from being sent."""
    try:
        add_image(images, image)
    except (ValueError, TypeError, OSError) as exc:
        return InvalidArgument(f"{field}: {exc}", field_violations=[FieldViolation(field, str(exc))])
    return None


def _each(convert: Callable[[Any], R]) -> Callable[[Sequence[Any], pb.ModelStamp], list[R]]:
    """Many answers, each converted alone under the call's stamp (what ITEM_RESULTS does faster)."""

    def each(items: Sequence[Any], stamp: pb.ModelStamp) -> list[R]:
        out = []
        for item in items:
            item.stamp.CopyFrom(stamp)
            out.append(convert(item))
        return out

    return each


def _caller(method: Method) -> str:
    return method.sdk_name
