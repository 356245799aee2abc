"""The circuit breaker's rules, in-process and on Redis alike: open, skip, one probe, close.

The Redis tests use a private redis-server (whatever REDIS_URL says), so they
run in every test run; time is passed in (``now``) so cool-downs take no time.
"""

import asyncio
import itertools
import random
import socket
import time

import pytest

from providers import breaker
from tests.limiter_support import RedisServer, free_port

T0 = 2_000_000_000.0  # a fixed wall clock
_route_ids = itertools.count(random.randrange(10**6, 10**9, 10**4))


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def breaker_settings(settings):
    settings.LLMPROXY_BREAKER_FAILURES = 3
    settings.LLMPROXY_BREAKER_WINDOW_SECONDS = 10.0
    settings.LLMPROXY_BREAKER_COOLDOWN_SECONDS = 5.0
    # Every decision asks Redis, so that a test sees what another process would.
    settings.LLMPROXY_BREAKER_CACHE_SECONDS = 0.0
    breaker.forget()
    yield
    breaker.forget()


@pytest.fixture(params=["in_process", "on_redis"])
def backend(request, settings):
    if request.param == "on_redis":
        server = request.getfixturevalue("redis_server")
        settings.REDIS_URL = server.url
        return server
    settings.REDIS_URL = ""
    return None


@pytest.fixture
def route_id():
    return next(_route_ids)


async def fail(route_id, times, now, verdict=breaker.CLOSED):
    for _ in range(times):
        await breaker.report(route_id, verdict, ok=False, now=now)


async def open_breaker(route_id, now=T0):
    await fail(route_id, 3, now)
    assert await breaker.acquire(route_id, lease=2, now=now) == breaker.OPEN


async def test_a_route_is_used_until_enough_failures_fall_in_one_window(backend, route_id):
    await fail(route_id, 2, T0)
    assert await breaker.acquire(route_id, lease=2, now=T0 + 1) == breaker.CLOSED
    await fail(route_id, 1, T0 + 2)
    assert await breaker.acquire(route_id, lease=2, now=T0 + 2) == breaker.OPEN


async def test_failures_spread_wider_than_the_window_do_not_open_it(backend, route_id):
    await fail(route_id, 2, T0)
    await fail(route_id, 2, T0 + 11)  # a new window: 2 failures in it
    assert await breaker.acquire(route_id, lease=2, now=T0 + 12) == breaker.CLOSED
    await fail(route_id, 1, T0 + 12)
    assert await breaker.acquire(route_id, lease=2, now=T0 + 12) == breaker.OPEN


async def test_an_open_route_is_skipped_until_its_cool_down_ends_then_probed_once(backend, route_id):
    await open_breaker(route_id)
    assert await breaker.acquire(route_id, lease=2, now=T0 + 4.9) == breaker.OPEN
    assert await breaker.acquire(route_id, lease=2, now=T0 + 5) == breaker.PROBE
    assert await breaker.acquire(route_id, lease=2, now=T0 + 5.1) == breaker.OPEN


async def test_a_successful_probe_closes_the_breaker(backend, route_id):
    await open_breaker(route_id)
    assert await breaker.acquire(route_id, lease=2, now=T0 + 6) == breaker.PROBE
    await breaker.report(route_id, breaker.PROBE, ok=True, now=T0 + 6.5)
    assert await breaker.acquire(route_id, lease=2, now=T0 + 6.6) == breaker.CLOSED
    # Closed afresh: it takes a full count of failures to open it again.
    await fail(route_id, 2, T0 + 7)
    assert await breaker.acquire(route_id, lease=2, now=T0 + 7) == breaker.CLOSED


async def test_a_failed_probe_opens_it_for_another_cool_down(backend, route_id):
    await open_breaker(route_id)
    assert await breaker.acquire(route_id, lease=2, now=T0 + 6) == breaker.PROBE
    await fail(route_id, 1, T0 + 6.5, verdict=breaker.PROBE)
    assert await breaker.acquire(route_id, lease=2, now=T0 + 11) == breaker.OPEN
    assert await breaker.acquire(route_id, lease=2, now=T0 + 11.5) == breaker.PROBE


async def test_a_probe_that_never_reports_frees_the_probe_when_its_lease_ends(backend, route_id):
    await open_breaker(route_id)
    assert await breaker.acquire(route_id, lease=2, now=T0 + 6) == breaker.PROBE
    assert await breaker.acquire(route_id, lease=2, now=T0 + 7.9) == breaker.OPEN
    assert await breaker.acquire(route_id, lease=2, now=T0 + 8.1) == breaker.PROBE


async def test_a_released_probe_goes_to_the_next_request_at_once(backend, route_id):
    await open_breaker(route_id)
    assert await breaker.acquire(route_id, lease=30, now=T0 + 6) == breaker.PROBE
    breaker.release(route_id)
    await asyncio.gather(*breaker._pending)
    assert await breaker.acquire(route_id, lease=30, now=T0 + 6.1) == breaker.PROBE


async def test_late_failures_of_requests_let_through_before_it_opened_change_nothing(backend, route_id):
    await open_breaker(route_id)
    await fail(route_id, 5, T0 + 4)
    assert await breaker.acquire(route_id, lease=2, now=T0 + 5) == breaker.PROBE


async def test_breakers_are_per_route(backend, route_id):
    other = next(_route_ids)
    await open_breaker(route_id)
    assert await breaker.acquire(other, lease=2, now=T0) == breaker.CLOSED


async def test_among_many_processes_only_one_request_gets_the_probe(redis_server, settings, route_id):
    settings.REDIS_URL = redis_server.url
    await open_breaker(route_id)
    verdicts = []
    for _ in range(10):
        breaker._cache.clear()  # each call as a process that has not seen the route yet
        verdicts.append(await breaker.acquire(route_id, lease=5, now=T0 + 6))
    verdicts += await asyncio.gather(*(breaker.acquire(route_id, lease=5, now=T0 + 6) for _ in range(10)))
    assert verdicts.count(breaker.PROBE) == 1
    assert verdicts.count(breaker.OPEN) == 19


def evalsha_calls(server):
    stats = server.client().info("commandstats")
    return stats.get("cmdstat_evalsha", {}).get("calls", 0)


async def test_a_healthy_route_costs_one_redis_round_trip_per_cache_period(redis_server, settings, route_id):
    settings.REDIS_URL = redis_server.url
    settings.LLMPROXY_BREAKER_CACHE_SECONDS = 1.0
    before = evalsha_calls(redis_server)
    for _ in range(50):
        assert await breaker.acquire(route_id, lease=2) == breaker.CLOSED
        await breaker.report(route_id, breaker.CLOSED, ok=True)
    assert evalsha_calls(redis_server) - before == 1


async def test_the_state_a_process_caches_is_at_most_the_cache_period_old(redis_server, settings, route_id):
    settings.REDIS_URL = redis_server.url
    settings.LLMPROXY_BREAKER_CACHE_SECONDS = 0.3
    now = time.time()
    assert await breaker.acquire(route_id, lease=2, now=now) == breaker.CLOSED
    # Another process opens the breaker: its failures go straight to Redis.
    client = redis_server.client()
    client.hset(breaker.redis_key(route_id), mapping={"open_until": now + 60, "probe_until": 0})
    assert await breaker.acquire(route_id, lease=2, now=now) == breaker.CLOSED  # still the cached copy
    await asyncio.sleep(0.35)
    assert await breaker.acquire(route_id, lease=2, now=now) == breaker.OPEN


async def test_breaker_keys_carry_a_hash_tag_for_redis_cluster(redis_server, settings, route_id):
    settings.REDIS_URL = redis_server.url
    await fail(route_id, 1, T0)
    key = breaker.redis_key(route_id)
    assert key.startswith(f"{settings.LLMPROXY_REDIS_KEY_PREFIX}:") and key.endswith(f"{{r{route_id}}}")
    assert redis_server.client().exists(key)
    assert 0 < redis_server.client().ttl(key) <= breaker.KEY_TTL_SECONDS


async def test_when_redis_is_down_the_breaker_works_in_process_without_raising(settings, route_id):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    started = time.monotonic()
    await open_breaker(route_id)
    assert await breaker.acquire(route_id, lease=2, now=T0 + 6) == breaker.PROBE
    assert time.monotonic() - started < 2


async def test_a_redis_that_does_not_answer_never_holds_a_request_up(settings, route_id):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        settings.REDIS_URL = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        started = time.monotonic()
        assert await breaker.acquire(route_id, lease=2) == breaker.CLOSED
        await breaker.report(route_id, breaker.CLOSED, ok=False)
        assert time.monotonic() - started < 1.0


def test_the_admin_view_describes_and_resets_a_breaker(backend, route_id):
    asyncio.run(fail(route_id, 1, time.time()))
    [state] = breaker.states([route_id]).values()
    assert (state.state, state.failures) == ("closed", 1)
    assert state.describe() == "closed (1 recent failures)"

    asyncio.run(open_breaker(route_id, now=time.time()))
    state = breaker.states([route_id])[route_id]
    assert state.state == "open"
    assert state.describe().startswith("open (5s of cool-down left")

    breaker.reset([route_id])
    assert breaker.states([route_id])[route_id].describe() == "closed"
    assert asyncio.run(breaker.acquire(route_id, lease=2)) == breaker.CLOSED


def test_a_breaker_past_its_cool_down_is_shown_half_open(backend, route_id):
    asyncio.run(open_breaker(route_id, now=time.time() - 6))
    assert breaker.states([route_id])[route_id].describe() == "half-open (next request probes)"
