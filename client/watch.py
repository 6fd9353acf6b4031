"""The SDK side of Watch: a layer's activation maps for a stream of frames.

:class:`WatchSession` is one open stream: ``send`` frames, ``change`` the layer, unit, top_k or
float16 without reopening, iterate the answers (:class:`WatchFrame`). A sender thread turns
frames into messages, so the caller's source (a camera loop) never waits on the consumer of the
answers; the server keeps at most one frame waiting (latest frame wins) and says in each answer
how many it skipped. The session keeps at most ``max_in_flight`` frames sent but not yet answered
(default 2: one computing, one waiting): a sender flooding the stream would otherwise fill the
server's reader and the transport with frames that are only skipped, and those threads take the
cores the forward needs. ``InterpClient.watch(frames, ...)`` is the simple form over an iterable.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np

from client.errors import InterpError, from_item_error, from_rpc_error
from client.images import ImageLike, image_message
from protos import interp_pb2 as pb

__all__ = ["WatchFrame", "WatchSession", "dequantize"]

_CLOSE = object()


@dataclass(frozen=True)
class WatchFrame:
    """One processed frame.

    Attributes:
        sequence: the frame's number among the frames sent (0-based); -1 for the answer to a
            settings change the server refused (``error`` says why).
        skipped: frames the server replaced by newer ones (never computed) since the previous answer.
        layer: the module path the maps are of; unit: the selected unit (-1: none).
        maps: (C, H, W) or (F,) float32, the quantization undone (within half a step per channel).
        unit_map: the selected unit's map at full precision (None without a unit).
        predictions: (index, label, probability) of the top_k classes, best first.
        compute_ms: the server's time for this frame; error: this frame's own failure (not raised).
    """

    sequence: int
    skipped: int
    layer: str
    unit: int
    maps: np.ndarray | None
    unit_map: np.ndarray | None
    predictions: list[tuple[int, str, float]]
    compute_ms: float
    error: InterpError | None = None
    raw: pb.WatchResponse = field(default_factory=pb.WatchResponse, repr=False)

    @classmethod
    def from_message(cls, reply: pb.WatchResponse) -> WatchFrame:
        error = None
        if reply.HasField("error"):
            error = from_item_error(reply.error, field=reply.error.field or "frame", request_id=reply.stamp.request_id)
        unit_map = None
        if reply.HasField("unit_map"):
            t = reply.unit_map
            unit_map = np.frombuffer(t.data, dtype="<f4").reshape(tuple(t.shape)).copy()
        return cls(
            sequence=reply.sequence,
            skipped=reply.skipped,
            layer=reply.layer,
            unit=reply.unit,
            maps=dequantize(reply.maps) if reply.HasField("maps") else None,
            unit_map=unit_map,
            predictions=[(p.index, p.label, p.probability) for p in reply.predictions],
            compute_ms=reply.compute_ms,
            error=error,
            raw=reply,
        )


def dequantize(maps: pb.QuantizedMaps) -> np.ndarray:
    """The float32 maps of a QuantizedMaps message: ``offset[c] + scale[c] * q`` or the float16 values."""
    shape = tuple(maps.shape)
    if maps.float16:
        return np.frombuffer(maps.data, dtype="<f2").astype(np.float32).reshape(shape)
    q = np.frombuffer(maps.data, dtype=np.uint8).astype(np.float32)
    channels = len(maps.scale)
    q = q.reshape(channels, -1)
    scale = np.asarray(maps.scale, dtype=np.float32)[:, None]
    offset = np.asarray(maps.offset, dtype=np.float32)[:, None]
    q *= scale  # in place: the answer's maps are decoded once per frame
    q += offset
    return q.reshape(shape)


def _settings(
    model: str | None = None,
    layer: str | None = None,
    unit: int | None = None,
    top_k: int | None = None,
    float16: bool | None = None,
) -> dict[str, Any]:
    values = {"model": model, "layer": layer, "unit": unit, "top_k": top_k, "float16": float16}
    return {k: v for k, v in values.items() if v is not None}


class WatchSession:
    """One open Watch stream (use as a context manager; ``cancel`` or leaving the block ends it).

    ``send(frame)`` queues a frame (numpy array, path or encoded bytes) for the sender thread and
    waits only while ``max_pending`` messages are still unsent (they leave once fewer than
    ``max_in_flight`` sent frames are unanswered; ``None``: no bound); ``change(layer=..., unit=...)``
    changes the settings for the frames sent after it; ``close()`` says no more frames will come
    (the answers to those sent still arrive); iterating yields :class:`WatchFrame` answers in order.
    """

    def __init__(
        self,
        open_stream: Callable[[Iterator[pb.WatchRequest]], Any],
        *,
        model: str,
        layer: str,
        unit: int | None = None,
        top_k: int | None = 5,
        float16: bool | None = None,
        max_pending: int = 2,
        max_in_flight: int | None = 2,
    ) -> None:
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1 (or None), not {max_in_flight}")
        self.max_in_flight = max_in_flight
        self.frames_sent = 0  # frames handed to the transport
        self.frames_answered = 0  # frames answered or skipped by the server (the last answer's sequence + 1)
        self._window = threading.Condition()
        self.window_full = threading.Event()  # set while a frame waits for an answer to free the window
        self._outgoing: queue.Queue[Any] = queue.Queue(maxsize=max(1, max_pending))
        self._first: dict[str, Any] | None = _settings(model, layer, -1 if unit is None else unit, top_k, float16)
        self._closed = False  # no more frames
        self._cancelled = False
        self._ended = False  # the server ended the stream (answers all read, or an error)
        self._lock = threading.Lock()
        self._call = open_stream(self._requests())

    def _requests(self) -> Iterator[pb.WatchRequest]:
        # Read by gRPC on its own thread: the caller's send() never waits for the network.
        while True:
            item = self._outgoing.get()
            if item is _CLOSE:
                return
            if item.HasField("frame"):
                if not self._wait_for_window():
                    return
            yield item

    def _wait_for_window(self) -> bool:
        """Wait until fewer than ``max_in_flight`` frames are unanswered, then count one more sent;
        False when the stream ended or was cancelled meanwhile."""
        with self._window:
            while self.max_in_flight is not None and self.frames_sent - self.frames_answered >= self.max_in_flight:
                if self._cancelled or self._ended:
                    return False
                self.window_full.set()
                self._window.wait(timeout=0.1)
            self.window_full.clear()
            self.frames_sent += 1
            return True

    def _answered(self, sequence: int, *, ended: bool = False) -> None:
        with self._window:
            self.frames_answered = max(self.frames_answered, sequence + 1)
            self._ended = self._ended or ended
            self._window.notify_all()

    def _message(self, frame: ImageLike | None, settings: dict[str, Any]) -> pb.WatchRequest:
        with self._lock:
            first, self._first = self._first or {}, None
        message = pb.WatchRequest(**{**first, **settings})
        if frame is not None:
            message.frame.CopyFrom(image_message(frame))
        return message

    def send(self, frame: ImageLike, **settings: Any) -> None:
        """Queue one frame (with optional setting changes that apply from it on)."""
        if self._closed:
            raise RuntimeError("this Watch session is closed")
        self._put(self._message(frame, _settings(**settings)))

    def change(
        self,
        *,
        layer: str | None = None,
        unit: int | None = None,
        top_k: int | None = None,
        float16: bool | None = None,
    ) -> None:
        """Change settings for the frames sent after this (``unit=-1``: no unit)."""
        if self._closed:
            raise RuntimeError("this Watch session is closed")
        self._put(self._message(None, _settings(layer=layer, unit=unit, top_k=top_k, float16=float16)))

    def _put(self, item: Any) -> None:
        """Queue a message, waiting while ``max_pending`` are unsent, but never past a cancel."""
        while not self._cancelled:
            if self._ended:
                raise RuntimeError("this Watch stream has ended (its last answer or error says why)")
            try:
                self._outgoing.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """No more frames: the stream ends once the server answered those it has."""
        if not self._closed:
            if self._first is not None:  # nothing was sent: the first message still opens the stream
                self._put(self._message(None, {}))
            self._closed = True
            self._put(_CLOSE)

    def cancel(self) -> None:
        """End the stream now (the server frees its slot)."""
        self._cancelled = self._closed = True
        self._call.cancel()
        self._answered(-1)  # wakes a frame waiting for the window

    def __iter__(self) -> Iterator[WatchFrame]:
        try:
            for reply in self._call:
                self._answered(reply.sequence)
                yield WatchFrame.from_message(reply)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.CANCELLED and self._cancelled:
                return
            raise from_rpc_error(error) from error
        finally:
            self._answered(-1, ended=True)

    def __enter__(self) -> WatchSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()


def watch_frames(open_session: Callable[[], WatchSession], frames: Iterable[ImageLike]) -> Iterator[WatchFrame]:
    """Open the stream on the first ``next``, send ``frames`` from a sender thread and yield the
    answers; leaving the loop cancels."""
    session = open_session()

    failed: list[BaseException] = []

    def feed() -> None:
        try:
            for frame in frames:
                if session._cancelled:
                    return
                session.send(frame)
            session.close()
        except RuntimeError:  # the stream ended (its error reaches the reader of the answers)
            return
        except Exception as exc:  # noqa: BLE001 - the source or a frame failed: raised to the reader
            failed.append(exc)
            session.cancel()

    sender = threading.Thread(target=feed, name="interp-watch-sender", daemon=True)
    sender.start()
    try:
        yield from session
    finally:
        session.cancel()
    if failed:
        raise failed[0]
