"""The one place that does outbound HTTP: one pooled aiohttp session per event loop.

Two APIs over that one session (one pool of connections):
- ``get_session()``: aiohttp itself, for the OpenAI adapter, which carries
  almost all the traffic. Measured on the benchmark's machine: 160-190 µs of
  CPU per upstream call, against 530-650 µs through httpx's API over the
  aiohttp transport (bench/README.md): httpx's request and response models
  cost more than the call itself.
- ``get_client()``: httpx's API over the aiohttp transport, for the other
  adapters and commands. Closing it (``await get_client().aclose()``) closes
  the session too, so callers that clean up that way leave nothing open.
Both are tied to the loop that created them, hence one per loop rather than
one per process. Per-attempt deadlines are enforced by the router
(asyncio.timeout); the timeouts here are the transport's own bounds on a dead peer.
"""

import asyncio
import weakref

import aiohttp
import httpx
from django.conf import settings
from httpx_aiohttp import AiohttpTransport

_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple]" = weakref.WeakKeyDictionary()
_sessions: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession]" = (
    weakref.WeakKeyDictionary()
)
_KEEPALIVE_SECONDS = 30.0
_READ_TIMEOUT = 600.0


def _new_session():
    connector = aiohttp.TCPConnector(
        limit=settings.LLMPROXY_UPSTREAM_MAX_CONNECTIONS,
        keepalive_timeout=_KEEPALIVE_SECONDS,
        # httpx's trust store (certifi's), as before the session was shared.
        ssl=httpx.create_ssl_context(trust_env=False),
    )
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=settings.LLMPROXY_UPSTREAM_CONNECT_TIMEOUT, sock_read=_READ_TIMEOUT
    )
    return aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False)


def get_session() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        session = _new_session()
        _sessions[loop] = session
    return session


def _new_client(session):
    limits = httpx.Limits(
        max_connections=settings.LLMPROXY_UPSTREAM_MAX_CONNECTIONS,
        max_keepalive_connections=settings.LLMPROXY_UPSTREAM_MAX_CONNECTIONS,
        keepalive_expiry=_KEEPALIVE_SECONDS,
    )
    timeout = httpx.Timeout(
        connect=settings.LLMPROXY_UPSTREAM_CONNECT_TIMEOUT, read=_READ_TIMEOUT, write=60.0, pool=30.0
    )
    transport = AiohttpTransport(client=session, limits=limits, trust_env=False)
    return httpx.AsyncClient(transport=transport, timeout=timeout, limits=limits, trust_env=False)


def get_client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    session = get_session()
    entry = _clients.get(loop)
    if entry is None or entry[0].is_closed or entry[1] is not session:
        entry = (_new_client(session), session)
        _clients[loop] = entry
    return entry[0]
