"""A per-process async cache with a time-to-live and single-flight loading.

The gateway keeps keys, routes and limits here so the steady-state request
path never waits on the database: each entry is reloaded at most once per
TTL, and concurrent misses for one entry share one load.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable


class TTLCache:
    def __init__(self, ttl: float, max_entries: int = 100_000):
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict = {}
        self._loading: dict = {}

    def peek(self, key):
        """(value, age in seconds) or None, without loading."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        return entry[0], time.monotonic() - entry[1]

    async def get(self, key, load: Callable[[], Awaitable], *, ttl: float | None = None):
        entry = self._entries.get(key)
        now = time.monotonic()
        if entry is not None and now - entry[1] < entry[2]:
            return entry[0]
        return await self.reload(key, load, ttl=ttl)

    async def reload(self, key, load, *, ttl: float | None = None):
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # mark retrieved: nobody else may be waiting
            raise
        else:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (value, time.monotonic(), self.ttl if ttl is None else ttl)
            future.set_result(value)
            return value
        finally:
            self._loading.pop(key, None)

    def invalidate(self, key=None):
        if key is None:
            self._entries.clear()
        else:
            self._entries.pop(key, None)
