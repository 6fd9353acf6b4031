"""Parameter checks shared by the methods: each raises InvalidInput naming the valid range."""

from __future__ import annotations

import math

from interp.errors import InvalidInput


def check_int(name: str, value: object, lo: int, hi: int) -> None:
    """``value`` must be an int (not a bool) in lo..hi inclusive."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidInput(f"{name} must be an integer in {lo}..{hi}, got {value!r}")


def check_float(name: str, value: object, lo: float, hi: float, *, open_low: bool = False) -> None:
    """``value`` must be a finite number in [lo, hi] ((lo, hi] with ``open_low``)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (lo < value if open_low else lo <= value) and value <= hi
    if not ok:
        raise InvalidInput(f"{name} must be a finite number in {'(' if open_low else '['}{lo}, {hi}], got {value!r}")
