"""Typed errors of the model layer; the server maps them to gRPC status codes in one table."""

from __future__ import annotations


class UnknownModel(LookupError):
    """No model of that name is registered or served. The message lists the names that exist."""


class ModelUnavailable(RuntimeError):
    """The model is registered but not READY (e.g. no weights). The message says how to fix it."""


class UnknownLayer(ValueError):
    """No layer of that name or alias. The message lists the valid names."""


class WeightsError(ValueError):
    """A weights file was found but refused (checksum, format, keys or shapes)."""
