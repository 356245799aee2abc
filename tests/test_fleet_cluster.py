"""Three proxy processes behind one address on a three-node Redis Cluster: exact quotas, every row logged."""

import concurrent.futures
from collections import Counter

import httpx
import pytest
from django.conf import settings
from django.db import connection

from quotas.models import QuotaLimit
from tests import cluster_support, servers
from tests.fleet_support import Fleet, usage_written
from tests.gateway_helpers import make_key, make_route, wait_for_logs

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

redis_cluster = cluster_support.redis_cluster

HELLO = [{"role": "user", "content": "Hello"}]


def database_env():
    """Reports read from a 'replica' (the same database); on PostgreSQL, pooled connections."""
    env = {"DATABASE_REPLICA_URL": servers.test_database_url()}
    if connection.vendor == "postgresql":
        env.update(ASGI_THREADS=4, DATABASE_POOL_MIN=1, DATABASE_POOL_MAX=8)
    return env


@pytest.fixture(scope="module")
def fleet(django_db_setup, django_db_blocker, mock_upstream, redis_cluster):
    with django_db_blocker.unblock():
        fleet = Fleet("fleet-cluster", REDIS_URL=redis_cluster.url, **database_env())
    yield fleet
    fleet.stop()


def test_the_fleet_is_ready_on_the_cluster(fleet):
    response = httpx.get(f"{fleet.base_url}/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


def test_three_processes_on_a_redis_cluster_admit_exactly_the_limit_and_log_every_request(
    fleet, redis_cluster, acme, upstream, unique_model
):
    make_route(acme, unique_model, upstream.v1, upstream_model="mock-1?latency_ms=20")
    api_key, plain = make_key(acme)
    QuotaLimit.objects.create(
        tenant=acme, scope="key", api_key=api_key, metric="requests", period="month", limit=12
    )
    before = fleet.served()

    def call(_):
        return httpx.post(
            f"{fleet.base_url}/v1/chat/completions",
            headers={"authorization": f"Bearer {plain}"},
            json={"model": unique_model, "messages": HELLO},
            timeout=30,
        ).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        statuses = Counter(pool.map(call, range(36)))

    assert statuses == {200: 12, 429: 24}
    after = fleet.served()
    assert all(after[name] > before[name] for name in after), (before, after)  # spread over all three
    quota_keys = redis_cluster.keys(f"{settings.LLMPROXY_REDIS_KEY_PREFIX}:q:{{t{acme.id}}}:*")
    assert [port for port, keys in quota_keys.items() if keys] == [redis_cluster.port_of(f"{{t{acme.id}}}")]
    rows = wait_for_logs(36, model=unique_model)
    assert Counter(row.status for row in rows) == {200: 12, 429: 24}
    assert usage_written(unique_model) == 36
