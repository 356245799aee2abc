"""The one place that does outbound HTTP: one pooled httpx client per event loop.

httpx's API over the aiohttp transport: measured 1.5x cheaper per request than
httpx's default transport (DESIGN.md). Clients are tied to the loop that
created them, hence one per loop rather than one per process.
"""

import asyncio
import weakref

import httpx
from django.conf import settings
from httpx_aiohttp import AiohttpTransport

_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]" = (
    weakref.WeakKeyDictionary()
)


def _new_client():
    limits = httpx.Limits(
        max_connections=settings.LLMPROXY_UPSTREAM_MAX_CONNECTIONS,
        max_keepalive_connections=settings.LLMPROXY_UPSTREAM_MAX_CONNECTIONS,
        keepalive_expiry=30.0,
    )
    # Per-attempt deadlines are enforced by the router (asyncio.timeout); these
    # are the transport's own bounds on a dead peer.
    timeout = httpx.Timeout(connect=settings.LLMPROXY_UPSTREAM_CONNECT_TIMEOUT, read=600.0, write=60.0, pool=30.0)
    transport = AiohttpTransport(limits=limits, trust_env=False)
    return httpx.AsyncClient(transport=transport, timeout=timeout, limits=limits, trust_env=False)


def get_client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = _new_client()
        _clients[loop] = client
    return client
