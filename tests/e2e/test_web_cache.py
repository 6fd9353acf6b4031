"""The explorer's bounded cache: entries and bytes both bounded, least recently used evicted first."""

from __future__ import annotations

import pytest

from web.cache import LruCache


def test_capacity_evicts_the_least_recently_used() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3 and len(cache) == 2


def test_bytes_are_bounded_too_and_replacing_an_entry_counts_once() -> None:
    cache: LruCache[str, bytes] = LruCache(10, max_bytes=10, size=len)
    cache.put("a", b"1234")
    cache.put("b", b"1234")
    cache.put("a", b"123456")  # replaced, not added: 6 + 4 bytes
    assert cache.bytes == 10 and len(cache) == 2
    cache.put("c", b"12")
    assert cache.get("b") is None and cache.bytes == 8
    cache.put("big", b"x" * 50)  # alone over the bound: kept, everything else evicted
    assert len(cache) == 1 and cache.bytes == 50


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="capacity"):
        LruCache(0)
    with pytest.raises(ValueError, match="go together"):
        LruCache(2, max_bytes=10)
