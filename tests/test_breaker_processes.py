"""One route's circuit breaker, shared by two live proxy processes through Redis.

Two Daphne processes share a private redis-server (started here whatever
REDIS_URL says, so this runs in every test run). Route A fails twice, once
through each process: that opens its breaker, and both processes skip A. After
the cool-down, of a burst of requests through both processes exactly one
probes A; A answers, which closes the breaker for both.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import servers
from tests.conftest import ARTIFACTS
from tests.gateway_helpers import client, make_key, make_route, wait_for_logs
from tests.limiter_support import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HELLO = [{"role": "user", "content": "Hello"}]
COOLDOWN = 3.0
CACHE = 1.0


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def two_proxies(django_db_setup, django_db_blocker, mock_upstream, redis_server):
    breaker_env = {
        "REDIS_URL": redis_server.url,
        "LLMPROXY_BREAKER_FAILURES": "2",
        "LLMPROXY_BREAKER_WINDOW_SECONDS": "30",
        "LLMPROXY_BREAKER_COOLDOWN_SECONDS": str(COOLDOWN),
        "LLMPROXY_BREAKER_CACHE_SECONDS": str(CACHE),
    }
    started = []
    try:
        with django_db_blocker.unblock():
            for name in ("daphne-breaker-1", "daphne-breaker-2"):
                process, base = servers.start_daphne(ARTIFACTS / "logs", name=name, **breaker_env)
                process.base_url = base
                started.append(process)
        yield started
    finally:
        for process in started:
            process.stop()


def outcome(row):
    """(route, breaker, status) of each attempt, the route named A or B."""
    return [
        (a["upstream_model"][:6].replace("mock-1", "A").replace("mock-2", "B"), a["breaker"], a["status"])
        for a in row.attempts
    ]


def test_the_breaker_opens_probes_once_and_closes_across_two_processes(
    two_proxies, acme, upstream, unique_model
):
    first, second = two_proxies
    route_a = f"mock-1?fail_status=503&fail_first=2&latency_ms=600&id={unique_model}"
    make_route(acme, unique_model, upstream.v1, upstream_model=route_a, name=f"{unique_model}-a", priority=0)
    make_route(acme, unique_model, upstream.v1, upstream_model="mock-2", name=f"{unique_model}-b", priority=1)
    _, key = make_key(acme)

    def ask(proxy):
        client(proxy, key).chat.completions.create(model=unique_model, messages=HELLO)

    def sent_to_a():
        return sum(r["body"]["model"] == route_a for r in upstream.requests())

    # One failure through each process: two in the window open the breaker.
    ask(first)
    ask(second)
    opened_by = time.monotonic()
    rows = wait_for_logs(2, model=unique_model)
    assert [outcome(r) for r in rows] == [[("A", "closed", 503), ("B", "closed", 200)]] * 2

    # Both processes skip A, the first one once its cached copy (<= CACHE old) is stale.
    time.sleep(CACHE + 0.1)
    ask(first)
    ask(second)
    rows = wait_for_logs(4, model=unique_model)
    assert [outcome(r) for r in rows[2:]] == [[("A", "open", 0), ("B", "closed", 200)]] * 2
    assert sent_to_a() == 2

    # After the cool-down, a burst through both processes: one request probes A.
    time.sleep(max(0.0, opened_by + COOLDOWN + 0.2 - time.monotonic()))
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(ask, [first, second] * 3))
    burst = wait_for_logs(10, model=unique_model)[4:]
    outcomes = sorted(outcome(r) for r in burst)
    assert outcomes == [[("A", "open", 0), ("B", "closed", 200)]] * 5 + [[("A", "probe", 200)]]
    assert sent_to_a() == 3

    # The probe's success closed the breaker for both processes.
    time.sleep(CACHE + 0.1)
    ask(first)
    ask(second)
    rows = wait_for_logs(12, model=unique_model)
    assert [outcome(r) for r in rows[10:]] == [[("A", "closed", 200)]] * 2
    assert sent_to_a() == 5
