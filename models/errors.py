"""Typed errors of the model layer; the server maps them to gRPC status codes in one table."""

from __future__ import annotations

import reprlib

ECHO_LIMIT = 100  # characters of a client-supplied name that messages and logs repeat

_echo = reprlib.Repr()
_echo.maxstring = ECHO_LIMIT + 2  # + the quotes
_echo.maxother = ECHO_LIMIT


def shown(value: object) -> str:
    """``repr`` of a client-supplied value (model, layer, label, method name), at most about
    ``ECHO_LIMIT`` characters: a longer one is elided in the middle (``'abc...xyz'``).

    Every message and log line that repeats what a client sent goes through this, so a 60 MB
    "model name" is not echoed back whole, and control characters (newlines) arrive escaped.
    """
    return _echo.repr(value)


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


class FixedInputSize(ValueError):
    """A served model takes one input size only (an exported program without dynamic height and
    width) and a method asked for another. The message names the size and how to lift it."""
