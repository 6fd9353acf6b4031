"""Typed errors raised by the methods; the server maps them to gRPC status codes in one table."""

from __future__ import annotations

import reprlib

_echo = reprlib.Repr()
_echo.maxstring = 102  # 100 characters and the quotes
_echo.maxother = 100


def echoed(value: object) -> str:
    """``repr`` of a value the caller gave, at most about 100 characters (elided in the middle), for
    messages: a megabyte-long "colormap" is not repeated whole, and newlines arrive escaped."""
    return _echo.repr(value)


class InterpError(Exception):
    """Base class for every error a method raises on purpose."""


class InvalidInput(InterpError, ValueError):
    """A tensor or parameter the method cannot work with. The message names what was expected.

    ``param``: the name of the parameter at fault (``noise_level``, ``layers``) when it is one of
    the method's arguments or parameters; a server names the request field from it.
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class Cancelled(InterpError):
    """An iterative method was asked to stop (client cancelled, deadline expired)."""
