"""Which upstream failures are worth another try, and how long to wait before it.

- The client's own mistakes (400, 404, 422, ...: not retryable) come back at once.
- 401 and 403 mean the proxy's credential for that route is wrong: the next
  route, never the same one again; so does a route whose kind cannot serve the
  endpoint.
- Everything else retryable (connection errors, timeouts, 408, 409, 429, 5xx, a
  stream that broke before its first chunk) is tried again on the same route
  while the model's policy allows (ModelPolicy.max_attempts), after an
  exponential backoff with jitter, and never before the upstream's Retry-After.
  A Retry-After longer than LLMPROXY_RETRY_AFTER_MAX_SECONDS is not waited
  for: the next route is tried instead.
"""

import random

from django.conf import settings

from providers.adapters.base import UpstreamError

_NEXT_ROUTE_ONLY = frozenset({401, 403})


def same_route_again(error: UpstreamError) -> bool:
    return error.retryable and error.status not in _NEXT_ROUTE_ONLY and error.kind != "unsupported"


def backoff_seconds(tries_done: int, retry_after: float | None = None, rng=random) -> float | None:
    """The wait before try number ``tries_done + 1`` of one route; None: not this route again.

    Equal jitter: half the exponential step for sure, the other half at
    random, so concurrent clients spread out yet the wait still grows.
    """
    base = settings.LLMPROXY_RETRY_BACKOFF_BASE_SECONDS
    cap = settings.LLMPROXY_RETRY_BACKOFF_MAX_SECONDS
    step = min(cap, base * 2 ** max(tries_done - 1, 0))
    wait = step / 2 + rng.uniform(0, step / 2)
    if retry_after is not None:
        if retry_after > settings.LLMPROXY_RETRY_AFTER_MAX_SECONDS:
            return None
        wait = max(wait, retry_after)
    return wait
