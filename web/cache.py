"""A bounded, thread-safe least-recently-used map (uploads, feature visualizations)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """At most ``capacity`` entries (and, with ``size``, at most ``max_bytes`` in all); ``get``
    refreshes an entry, ``put`` evicts the least recently used until both bounds hold (the entry
    just put stays, even alone over ``max_bytes``: the caller caps single entries)."""

    def __init__(self, capacity: int, *, max_bytes: int | None = None, size: Callable[[V], int] | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if (max_bytes is None) != (size is None):
            raise ValueError("max_bytes and size go together")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._size = size
        self._bytes = 0
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None and self._size is not None:
                self._bytes -= self._size(old)
            self._items[key] = value
            self._bytes += self._size(value) if self._size is not None else 0
            while len(self._items) > 1 and (
                len(self._items) > self.capacity or (self.max_bytes is not None and self._bytes > self.max_bytes)
            ):
                _, evicted = self._items.popitem(last=False)
                self._bytes -= self._size(evicted) if self._size is not None else 0

    @property
    def bytes(self) -> int:
        """Total size of the entries (0 without ``size``)."""
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
