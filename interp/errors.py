"""Typed errors raised by the methods; the server maps them to gRPC status codes in one table."""

from __future__ import annotations


class InterpError(Exception):
    """Base class for every error a method raises on purpose."""


class InvalidInput(InterpError, ValueError):
    """A tensor or parameter the method cannot work with. The message names what was expected."""


class Cancelled(InterpError):
    """An iterative method was asked to stop (client cancelled, deadline expired)."""
