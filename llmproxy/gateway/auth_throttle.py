"""Failed key authentications per source address: throttled, and tallied for the security audit.

Each process counts the failures of the current minute per address; past
LLMPROXY_AUTH_FAILURES_PER_MINUTE an address gets 429 without its key being
looked at, until the minute ends. Guessing keys therefore costs the guesser,
not the database. The counts also feed AuthFailureTally, which the usage
batch writer turns into one audit row per address and minute.
"""

import time

from django.conf import settings

from audit.services import AuthFailureTally
from llmproxy.gateway.usage import recorder

tally = AuthFailureTally()
_failures: dict[str, int] = {}
_minute = 0


def _roll(now):
    global _minute
    minute = int(now // 60)
    if minute != _minute:
        _minute = minute
        _failures.clear()


def retry_after(ip: str) -> int | None:
    """Seconds to wait when this address is throttled, else None."""
    now = time.time()
    _roll(now)
    if _failures.get(ip, 0) >= settings.LLMPROXY_AUTH_FAILURES_PER_MINUTE:
        return max(1, 60 - int(now % 60))
    return None


def failed(ip: str, failure) -> None:
    _roll(time.time())
    if len(_failures) < 100_000:
        _failures[ip] = _failures.get(ip, 0) + 1
    tally.add(ip=ip or None, reason=failure.reason, prefix=failure.prefix, tenant_id=failure.tenant_id)
    recorder.wake()
