"""The base of the /v1 consumers: body limits, disconnects, and OpenAI-shaped answers.

Channels' AsyncHttpConsumer dispatches one message at a time, awaiting each
handler before it reads the next: a stream written from inside ``handle()``
would never see the client's ``http.disconnect``. So ``__call__`` reads the
body itself, then runs ``handle()`` with a disconnect listener beside it that
cancels it when the client goes away before the answer is whole; the
cancellation closes the upstream request and the handler's ``finally`` still
records the usage.
It also skips the per-message ``close_old_connections`` hop to a thread that
Channels does: the hot path touches no database connection.

A stream waits for a slow client (see ``_DaphneDrain``): under uvicorn ``send``
itself waits while the socket's buffer is full, under Daphne it does not.
"""

import asyncio
import functools
import re
import time
import uuid

from channels.generic.http import AsyncHttpConsumer
from django.conf import settings

from llmproxy.gateway.errors import GatewayError

_REQUEST_ID_RE = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


class BodyTooLarge(Exception):
    pass


class GatewayConsumer(AsyncHttpConsumer):
    # Anthropic's /v1/messages answers errors in Anthropic's shape.
    error_shape = "openai"
    methods = ("POST",)

    async def __call__(self, scope, receive, send):
        self.scope = scope
        self.base_send = send
        self.started_at = time.perf_counter()
        self.request_headers = {}
        for name, value in scope.get("headers", ()):
            self.request_headers[name.decode("latin-1").lower()] = value
        self.request_id = self._request_id()
        self.response_started = False
        self.response_finished = False
        self.client_gone = False
        self._drain = None  # set by the first chunk of a streamed answer: _DaphneDrain, or False
        try:
            body = await self._read_body(receive)
        except BodyTooLarge:
            await self.send_error(
                GatewayError(
                    413,
                    f"Request body is larger than {settings.LLMPROXY_MAX_BODY_BYTES} bytes.",
                    code="request_too_large",
                )
            )
            return
        except _ClientGone:
            return
        # The handler runs in this task, and a listener beside it cancels the task when the client goes
        # away before the answer has gone out whole: one task per request rather than two and a wait.
        task = asyncio.current_task()
        listener = asyncio.get_running_loop().create_task(self._cancel_on_disconnect(receive, task))
        try:
            await self._handle_safely(body)
        except asyncio.CancelledError:
            if not self.client_gone:
                raise
            task.uncancel()  # this cancellation was ours, and it is over
        finally:
            listener.cancel()
            if self._drain:
                self._drain.close()

    async def _cancel_on_disconnect(self, receive, task):
        while (await receive())["type"] != "http.disconnect":
            pass
        # Daphne and uvicorn also report a disconnect as soon as the answer has gone out whole: that ends
        # the exchange, it is not a client leaving early, and the handler may still be settling the quota
        # and recording the usage, which must not be cut short.
        if not self.response_finished:
            self.client_gone = True
            task.cancel()

    async def _read_body(self, receive) -> bytes:
        limit = settings.LLMPROXY_MAX_BODY_BYTES
        declared = self.request_headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    raise BodyTooLarge
            except ValueError:
                pass
        parts = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            parts.append(chunk)
            if not message.get("more_body"):
                return b"".join(parts)

    def _request_id(self) -> str:
        supplied = self.request_headers.get("x-request-id")
        if supplied and _REQUEST_ID_RE.match(supplied):
            return supplied.decode()
        return "req_" + uuid.uuid4().hex

    async def _handle_safely(self, body):
        try:
            if self.scope.get("method") not in self.methods:
                raise GatewayError(
                    405, f"Method {self.scope.get('method')} is not allowed here.", code="method_not_allowed"
                )
            await self.handle(body)
        except GatewayError as exc:
            if not self.response_started:
                await self.send_error(exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            import logging

            logging.getLogger(__name__).exception("unhandled error in %s", type(self).__name__)
            if not self.response_started:
                await self.send_error(GatewayError(500, "Internal error in the proxy.", type="server_error"))

    # --- answers -----------------------------------------------------------------
    async def send(self, message):
        if message["type"] == "http.response.body":
            if message.get("more_body", False):
                if self._drain is None:
                    self._drain = _DaphneDrain.of(self.base_send) or False
                await self.base_send(message)
                if self._drain and self._drain.paused:
                    await self._drain.wait()
                return
            self.response_finished = True
            if self._drain:
                self._drain.close()  # before Daphne finishes the request, which wants no producer left
        await self.base_send(message)

    def base_headers(self, extra=None) -> list:
        headers = [(b"x-request-id", self.request_id.encode())]
        if extra:
            headers.extend((k.encode(), str(v).encode()) for k, v in extra.items())
        return headers

    def overhead_header(self, upstream_ms=0.0):
        overhead = (time.perf_counter() - self.started_at) * 1000 - upstream_ms
        return (b"x-llmproxy-overhead-ms", f"{max(overhead, 0.0):.2f}".encode())

    async def start_response(self, status, content_type, extra_headers=None, upstream_ms=0.0):
        headers = self.base_headers(extra_headers)
        headers.append((b"content-type", content_type))
        headers.append(self.overhead_header(upstream_ms))
        self.response_started = True
        await self.send({"type": "http.response.start", "status": status, "headers": headers})

    async def send_json(self, status, payload: bytes, extra_headers=None, upstream_ms=0.0):
        await self.start_response(status, b"application/json", extra_headers, upstream_ms)
        await self.send({"type": "http.response.body", "body": payload, "more_body": False})

    async def send_error(self, error: GatewayError, extra_headers=None):
        headers = dict(extra_headers or {})
        headers.update(error.headers)
        body = error.anthropic_body() if self.error_shape == "anthropic" else error.openai_body()
        await self.send_json(error.status, body, headers)


class _ClientGone(Exception):
    pass


class _DaphneDrain:
    """Backpressure for a streamed answer under Daphne: wait while Twisted's buffer for the client is full.

    Daphne's ``send`` hands each chunk to Twisted, which appends it to the
    connection's write buffer and returns at once: with an upstream faster than
    the client reads, the buffer would grow to the whole answer. Twisted tells a
    registered streaming producer to pause when that buffer passes 64 KiB and to
    resume once it has drained, so this registers as the Twisted request's
    producer and the stream awaits ``wait()`` after a chunk that paused it. The
    relay then stops reading the upstream, whose own buffer fills, so TCP slows
    the upstream too: memory per slow client stays at a few chunks.

    Daphne passes each application ``functools.partial(Server.handle_reply,
    request)``; the request is found there. Any other ``send`` (uvicorn, tests,
    a wrapping middleware) gets no drain: uvicorn's ``send`` waits by itself.
    """

    __slots__ = ("request", "paused", "_resumed")

    @classmethod
    def of(cls, send):
        if not isinstance(send, functools.partial) or not send.args:
            return None
        if getattr(send.func, "__module__", "") != "daphne.server":
            return None
        request = send.args[0]
        if getattr(request, "channel", None) is None or request.producer is not None:
            return None  # gone already, or someone else's producer
        return cls(request)

    def __init__(self, request):
        self.request = request
        self._resumed = None
        # A buffer already full (an earlier answer on this connection still draining) is not announced
        # again until it drains: start from what the channel knows.
        self.paused = bool(getattr(request.channel, "_waitingForTransport", False))
        request.registerProducer(self, True)

    async def wait(self):
        self._resumed = asyncio.get_running_loop().create_future()
        try:
            await self._resumed
        finally:
            self._resumed = None

    # IPushProducer, called by Twisted on the same event loop.
    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        if self._resumed is not None and not self._resumed.done():
            self._resumed.set_result(None)

    def stopProducing(self):
        self.resumeProducing()  # the connection is going: nothing to wait for (the disconnect cancels)

    def close(self):
        request = self.request
        if request.producer is self and request.channel is not None:
            request.unregisterProducer()
        self.resumeProducing()


class NotFoundConsumer(GatewayConsumer):
    methods = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

    async def handle(self, body):
        raise GatewayError(404, f"Unknown endpoint {self.scope.get('path')}.", code="unknown_url")
