"""The circuit breakers on a real three-node Redis Cluster: a breaker one process opens, the others see."""

import random
import time

import pytest

from providers import breaker
from tests import cluster_support

redis_cluster = cluster_support.redis_cluster


@pytest.fixture
def on_cluster(redis_cluster, settings):
    settings.REDIS_URL = redis_cluster.url
    settings.LLMPROXY_BREAKER_FAILURES = 3
    settings.LLMPROXY_BREAKER_CACHE_SECONDS = 0
    breaker.forget()
    yield redis_cluster
    breaker.forget()


async def test_a_breaker_opened_by_failures_is_open_for_a_process_that_saw_none(on_cluster):
    routes = random.sample(range(10**6, 10**7), 6)
    for route in routes:
        for _ in range(3):
            verdict = await breaker.acquire(route, lease=5)
            await breaker.report(route, verdict, ok=False)
    breaker.forget()  # what another process knows: only what Redis says
    assert [await breaker.acquire(route, lease=5) for route in routes] == [breaker.OPEN] * 6
    holders = {on_cluster.port_of(breaker.redis_key(route)) for route in routes}
    assert len(holders) >= 2  # the routes' state really lives on several nodes


async def test_one_probe_at_a_time_after_the_cool_down_on_the_cluster(on_cluster, settings):
    settings.LLMPROXY_BREAKER_COOLDOWN_SECONDS = 0.1
    route = random.randrange(10**6, 10**7)
    for _ in range(3):
        await breaker.report(route, await breaker.acquire(route, lease=5), ok=False)
    later = time.time() + 1  # the cool-down is over
    verdicts = [await breaker.acquire(route, lease=5, now=later) for _ in range(3)]
    assert verdicts == [breaker.PROBE, breaker.OPEN, breaker.OPEN]


def test_the_admin_reads_and_resets_breakers_spread_over_the_nodes(on_cluster):
    routes = random.sample(range(10**6, 10**7), 6)
    client = on_cluster.client()
    for route in routes:
        client.hset(breaker.redis_key(route), mapping={"open_until": time.time() + 60, "probe_until": 0})
    assert {state.state for state in breaker.states(routes).values()} == {breaker.OPEN}
    breaker.reset(routes)
    assert {state.state for state in breaker.states(routes).values()} == {breaker.CLOSED}
    assert not any(client.exists(breaker.redis_key(route)) for route in routes)
