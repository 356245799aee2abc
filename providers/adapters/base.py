"""What every provider adapter shares: the hot-path snapshot of a route and the one error type.

Adapters speak a provider's wire format and hand the gateway OpenAI-shaped
dicts (a chat.completion, a chat.completion.chunk, ...), so the gateway has
one format to meter, cache and re-frame.
"""

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal

from providers import crypto

# Upstream statuses worth another route: the upstream's trouble, not the client's.
RETRYABLE_STATUSES = frozenset({401, 403, 408, 409, 429, 500, 502, 503, 504, 529})


class UpstreamError(Exception):
    def __init__(
        self,
        status,
        message,
        *,
        retryable,
        retry_after=None,
        timeout=False,
        kind="upstream_error",
        mid_stream=False,
    ):
        super().__init__(message)
        self.status = status  # the upstream's status; 0 for connection errors, 504 for timeouts
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.timeout = timeout
        self.kind = kind
        self.mid_stream = mid_stream


@dataclass(slots=True)
class ProviderTarget:
    id: int
    name: str
    kind: str
    base_url: str
    api_key_env: str
    encrypted_api_key: str
    api_version: str
    extra_headers: dict
    timeout: float
    connect_timeout: float
    options: dict
    _decrypted: str | None = field(default=None, repr=False)

    def credential(self) -> str:
        # An environment variable is read when the request is sent, so an
        # operator can rotate it without touching the proxy's database.
        if self.api_key_env:
            return os.environ.get(self.api_key_env, "")
        if self.encrypted_api_key:
            if self._decrypted is None:
                self._decrypted = crypto.decrypt(self.encrypted_api_key)
            return self._decrypted
        return ""


@dataclass(slots=True)
class RouteTarget:
    id: int
    model: str
    upstream_model: str
    priority: int
    weight: int
    input_price: Decimal
    output_price: Decimal
    provider: ProviderTarget

    def cost(self, input_tokens, output_tokens) -> Decimal:
        return (self.input_price * input_tokens + self.output_price * output_tokens) / 1_000_000


class Adapter:
    """One provider kind. ``endpoint`` is 'chat', 'completions' or 'embeddings'."""

    endpoints = frozenset({"chat", "completions", "embeddings"})

    async def complete(self, target: RouteTarget, endpoint: str, body: dict) -> dict:
        raise NotImplementedError

    async def stream(self, target: RouteTarget, endpoint: str, body: dict) -> AsyncIterator[dict]:
        """Yield OpenAI chunk dicts. Raise UpstreamError before the first one for a failed call."""
        raise NotImplementedError
        yield {}  # pragma: no cover
