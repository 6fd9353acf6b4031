"""Parameter checks shared by the methods: each raises InvalidInput naming the valid range."""

from __future__ import annotations

import math
from typing import TypeVar

from interp.errors import InvalidInput

T = TypeVar("T")


def check_int(name: str, value: object, lo: int, hi: int) -> int:
    """``value`` must be an int (not a bool) in lo..hi inclusive; returns it."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidInput(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    return value


def check_float(name: str, value: object, lo: float, hi: float, *, open_low: bool = False) -> float:
    """``value`` must be a finite number in [lo, hi] ((lo, hi] with ``open_low``); returns it."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        if (lo < value if open_low else lo <= value) and value <= hi:
            return value
    raise InvalidInput(f"{name} must be a finite number in {'(' if open_low else '['}{lo}, {hi}], got {value!r}")


def filled(value: T | None, name: str) -> T:
    """A parameter that the method's ``resolve`` has set. ``None`` here is a bug in the caller
    (resolved parameters never hold it), not bad user input, hence a TypeError."""
    if value is None:
        raise TypeError(f"parameter {name!r} used before its default was resolved")
    return value
