"""The one place that does outbound HTTP: one pooled aiohttp session per event loop.

Every adapter calls upstreams through ``post()`` and ``post_stream()`` here,
on aiohttp directly: measured on the benchmark's machine, 160-190 µs of CPU
per upstream call, against 530-650 µs through httpx's API over the same
aiohttp transport (bench/README.md). The session is tied to the loop that
created it, hence one per loop rather than one per process; ``close()`` ends
the running loop's (commands and tests that run their own loops call it).
Per-attempt deadlines are enforced by the router (asyncio.timeout); the
timeouts here are the transport's own bounds on a dead peer. Transport
failures come out as the adapters' UpstreamError (504 on a timeout, a
connection error otherwise), so no caller sees an aiohttp exception.
"""

import asyncio
import weakref
from collections.abc import Mapping
from contextlib import asynccontextmanager

import aiohttp
import httpx
from django.conf import settings

from providers.adapters.base import UpstreamError

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


async def close():
    """Close the running loop's session (a command or test about to end its loop)."""
    session = _sessions.pop(asyncio.get_running_loop(), None)
    if session is not None:
        await session.close()


async def post(url: str, content: bytes, headers: dict) -> tuple[int, bytes, Mapping[str, str]]:
    """POST and read the whole answer: (status, body, headers)."""
    try:
        async with get_session().post(url, data=content, headers=headers) as response:
            return response.status, await response.read(), response.headers
    except aiohttp.ClientError as exc:
        raise transport_error(exc)


@asynccontextmanager
async def post_stream(url: str, content: bytes, headers: dict):
    """POST and hand over the response unread, for the caller to stream with ``chunks()``.

    Left before its end (the client went away, the stream broke, a guardrail
    blocked it), the connection is closed rather than released: released
    half-read, aiohttp would put it back in the pool and the upstream would go
    on generating (and billing) for a client that left.
    """
    try:
        response = await get_session().post(url, data=content, headers=headers)
    except aiohttp.ClientError as exc:
        raise transport_error(exc)
    complete = False
    try:
        yield response
        complete = response.content.at_eof()
    finally:
        if complete:
            response.release()
        else:
            response.close()


async def chunks(response):
    """The response body as it arrives, a transport failure raised as an UpstreamError."""
    try:
        async for raw in response.content.iter_any():
            yield raw
    except aiohttp.ClientError as exc:
        raise transport_error(exc)


def transport_error(exc: Exception) -> UpstreamError:
    if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return UpstreamError(
            504, f"upstream timed out ({type(exc).__name__})", retryable=True, timeout=True, kind="timeout"
        )
    return UpstreamError(
        0, f"upstream connection failed ({type(exc).__name__})", retryable=True, kind="connection_error"
    )
