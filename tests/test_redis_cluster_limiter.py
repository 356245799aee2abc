"""The quota limiter on a real three-node Redis Cluster: one slot per request, exact limits, many nodes."""

import asyncio
import itertools
import random
from decimal import Decimal

import pytest
from redis.crc import key_slot

from quotas import limiter
from quotas.limiter import Limit, reserve, settle
from tests import cluster_support
from tests.limiter_support import T0, ask

redis_cluster = cluster_support.redis_cluster

_ids = itertools.count(random.randrange(10**6, 10**9, 10**4))


@pytest.fixture
def on_cluster(redis_cluster, settings, monkeypatch):
    settings.REDIS_URL = redis_cluster.url
    monkeypatch.setattr(limiter, "_redis_retry_at", 0.0)
    return redis_cluster


def limit(tenant_id, metric="requests", amount=12, scope="tenant"):
    return Limit(next(_ids), tenant_id, scope, metric, "day", Decimal(amount))


def window_hash(redis_cluster, a_limit):
    """The fields of A_LIMIT's window at T0, read from the node that holds it."""
    pattern = f"*:q:{{t{a_limit.tenant_id}}}:{a_limit.id}:*"
    for port, keys in redis_cluster.keys(pattern).items():
        for key in keys:
            if not key.endswith(":x"):
                return redis_cluster.node(port).hgetall(key)
    return {}


async def test_every_key_of_one_request_lives_in_one_slot(on_cluster):
    limits = [limit(41, "requests"), limit(41, "tokens", 10_000, "key"), limit(41, "cost", 5, "user")]
    decision = await reserve(limits, ask(input_price="1", output_price="2"), now=T0)
    assert decision.admitted
    found = on_cluster.keys("*:q:{t41}:*")
    keys = [key for node_keys in found.values() for key in node_keys]
    assert len(keys) == 6  # a window hash and a deadlines set per limit
    assert len({key_slot(key.encode()) for key in keys}) == 1
    assert sum(1 for node_keys in found.values() if node_keys) == 1


async def test_tenants_spread_over_the_nodes_and_each_gets_exactly_its_limit(on_cluster):
    tenants = range(101, 109)
    limits = {tenant: limit(tenant, amount=12) for tenant in tenants}
    fallbacks = limiter.counters.copy()
    decisions = await asyncio.gather(
        *(reserve([limits[tenant]], ask(), now=T0) for tenant in tenants for _ in range(30))
    )
    admitted = {tenant: 0 for tenant in tenants}
    for i, decision in enumerate(decisions):
        admitted[tenants[i // 30]] += decision.admitted
    assert admitted == {tenant: 12 for tenant in tenants}
    assert limiter.counters == fallbacks  # every one was decided on the cluster
    nodes = {on_cluster.port_of(f"x:{{t{tenant}}}:y") for tenant in tenants}
    assert len(nodes) >= 2  # the test really crossed nodes


async def test_a_settle_replaces_the_reservation_by_the_real_usage_on_the_tenants_node(on_cluster):
    tokens = limit(52, "tokens", 1000)
    decision = await reserve([tokens], ask(input_tokens=10, max_output_tokens=100), now=T0)
    assert window_hash(on_cluster, tokens)["held"] == "110"
    await settle(decision.reservation, input_tokens=10, output_tokens=7, cost=Decimal(0))
    fields = window_hash(on_cluster, tokens)
    assert (fields["used"], fields["held"]) == ("17", "0")


async def test_scripts_flushed_from_every_node_are_loaded_again(on_cluster):
    for port in on_cluster.ports:
        on_cluster.node(port).script_flush()
    requests = limit(63, amount=1)
    first = await reserve([requests], ask(), now=T0)
    second = await reserve([requests], ask(), now=T0)
    assert (first.admitted, second.admitted) == (True, False)


async def test_the_admin_reads_a_windows_usage_from_the_tenants_node(on_cluster):
    requests = limit(74, amount=5)
    decision = await reserve([requests], ask(), now=T0)
    await settle(decision.reservation, input_tokens=1, output_tokens=1, cost=Decimal(0))
    found = await asyncio.to_thread(limiter.current_usage, requests, T0)
    assert (found["used"], found["reserved"]) == (1, 0)
