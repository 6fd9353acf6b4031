"""Streamed calls: :class:`EventStream` (progress events, then the result) and the blocking form
that every iterator form of the SDK derives (:func:`blocking`)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar

import grpc

from client.errors import Internal, from_rpc_error
from client.results import ProgressEvent

__all__ = ["EventStream", "ProgressCallback", "blocking", "run"]

R = TypeVar("R")
P = ParamSpec("P")
ProgressCallback = Callable[[ProgressEvent], object]


class EventStream(Generic[R]):
    """Iterator over a streaming call: :class:`ProgressEvent` objects, then the final result.

    ``progress``, when given, is called with each ProgressEvent as it passes.
    The call starts at the first ``next()``. Closing the stream (``close()``, leaving a ``with``
    block, breaking out of a ``for`` loop and dropping the stream, or garbage collection) before the
    result arrives cancels the call, which stops the server's work.
    """

    def __init__(
        self, start: Callable[[], Any], convert: Callable[[Any], R], progress: ProgressCallback | None = None
    ) -> None:
        self._start = start
        self._convert = convert
        self._progress = progress
        self._call: Any = None
        self._finished = False
        self.result: R | None = None  #: the final result, once received

    def __iter__(self) -> EventStream[R]:
        return self

    def __next__(self) -> ProgressEvent | R:
        if self._finished:
            raise StopIteration
        if self._call is None:
            self._call = self._start()
        while True:
            try:
                event = next(self._call)
            except StopIteration:
                self._finished = True
                raise Internal("the server ended the stream without a final result") from None
            except grpc.RpcError as error:
                self._finished = True
                raise from_rpc_error(error) from error
            kind = event.WhichOneof("event")
            if kind == "progress":
                progress = ProgressEvent.from_proto(event.progress)
                if self._progress is not None:
                    self._progress(progress)  # raising from it ends the loop, and closing cancels
                return progress
            if kind == "result":
                self._finished = True
                self.result = self._convert(event.result)
                self._drain()
                return self.result
            # An event kind this client does not know (a newer server): skip it.

    def _drain(self) -> None:
        # The result is the last message; reading the end of the stream lets the call finish with
        # OK instead of being cancelled (which the server would count as a cancelled request).
        try:
            next(self._call)
        except StopIteration:
            return
        except grpc.RpcError:
            return
        self._call.cancel()

    def cancel(self) -> None:
        """Cancel the call if it is still running (no-op once the result has arrived)."""
        if self._call is not None and not self._finished:
            self._call.cancel()
        self._finished = True

    close = cancel

    def __enter__(self) -> EventStream[R]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to cancel reliably
            pass


def run(stream: EventStream[R]) -> R:
    """Consume a stream (its progress callback sees each event); return the final result."""
    with stream:
        for item in stream:
            if not isinstance(item, ProgressEvent):
                return item
    raise Internal("the server ended the stream without a final result")


def blocking(iterate: Callable[P, EventStream[R]]) -> Callable[P, R]:
    """The blocking form of an SDK iterator form: the same arguments, the final result returned.

    ``c.dream(...)`` is ``iter_dream(...)`` read to its end: one signature per method, declared on
    the iterator form; ``progress=`` is called with each :class:`ProgressEvent` and raising from it
    cancels the call.
    """

    @functools.wraps(iterate)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return run(iterate(*args, **kwargs))

    name = iterate.__name__.removeprefix("iter_")
    call.__name__ = call.__qualname__ = name
    returns = str(inspect.signature(iterate).return_annotation)
    signature = inspect.signature(iterate)
    call.__signature__ = signature.replace(  # type: ignore[attr-defined]
        return_annotation=returns.removeprefix("EventStream[").removesuffix("]")
    )
    first, _, rest = (iterate.__doc__ or "").partition("\n")
    call.__doc__ = (
        f"{first}\n\n        Blocks until the result and returns it (:meth:`{iterate.__name__}`: the events).\n{rest}"
    )
    return call
