"""A small thread-safe cache whose entries expire after a number of seconds.

Streamlit's ``st.cache_data`` is not used here because the data layer also serves code running
without Streamlit (the analysis called from Airflow).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

T = TypeVar("T")


class TTLCache:
    def __init__(self, ttl: float, maxsize: int = 256) -> None:
        self.ttl = ttl
        self.maxsize = maxsize
        self._items: OrderedDict[Hashable, tuple[float, object]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The cached value for ``key`` if younger than the TTL, else ``compute()`` (stored)."""
        if self.ttl <= 0:
            self.misses += 1
            return compute()
        now = time.monotonic()
        with self._lock:
            found = self._items.get(key)
            if found is not None and now - found[0] < self.ttl:
                self._items.move_to_end(key)
                self.hits += 1
                return found[1]  # type: ignore[return-value]
        self.misses += 1
        value = compute()
        with self._lock:
            self._items[key] = (time.monotonic(), value)
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
