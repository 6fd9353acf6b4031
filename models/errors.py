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


class WeightsNotFound(WeightsError):
    """No weights exist anywhere the resolver looks. The message says how to provide them.

    A subclass of WeightsError so that one ``except WeightsError`` handles every weights
    problem; catch this one first where "missing" and "refused" must be told apart (only
    missing weights may be replaced by ``--random-weights``).
    """
