"""One asyncio Redis client per event loop for the hot path (django-redis is synchronous)."""

import asyncio
import weakref

from django.conf import settings

_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, object]" = weakref.WeakKeyDictionary()


def get_redis():
    """The running loop's client, or None when REDIS_URL is not set (embedded mode)."""
    if not settings.REDIS_URL:
        return None
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(
            settings.REDIS_URL,
            socket_connect_timeout=1.0,
            socket_timeout=1.0,
            health_check_interval=30,
            max_connections=256,
        )
        _clients[loop] = client
    return client


async def ping_redis():
    client = get_redis()
    if client is None:
        return True, "not configured"
    try:
        await client.ping()
        return True, "ok"
    except Exception as exc:  # connection refused, timeout, auth...
        return False, type(exc).__name__
