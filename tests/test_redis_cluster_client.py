"""REDIS_URL naming a Redis Cluster: the clients, readiness, the Django cache, strict settings."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from redis.asyncio.cluster import RedisCluster

from llmproxy.redis_client import get_redis, get_sync_redis, parse_redis_url, ping_redis
from tests import cluster_support

redis_cluster = cluster_support.redis_cluster

ROOT = Path(__file__).resolve().parent.parent


def run_django(code, **env):
    """Run CODE in a fresh process configured by ENV (settings are read at start-up)."""
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "llmproxy.settings_test", **env},
    )


async def test_a_cluster_url_gives_a_cluster_client_that_answers(redis_cluster, settings):
    settings.REDIS_URL = redis_cluster.url
    client = get_redis()
    assert isinstance(client, RedisCluster)
    assert await ping_redis() == (True, "ok")
    names = [f"probe:{uuid.uuid4().hex}" for _ in range(60)]
    for name in names:
        await client.set(name, "1", ex=60)
    assert {redis_cluster.port_of(name) for name in names} == set(redis_cluster.ports)
    assert [await client.get(name) for name in names] == [b"1"] * 60


async def test_redis_cluster_true_turns_a_plain_url_of_one_node_into_a_cluster_client(
    redis_cluster, settings
):
    settings.REDIS_URL = f"redis://127.0.0.1:{redis_cluster.ports[0]}/0"
    settings.REDIS_CLUSTER = True
    assert isinstance(get_redis(), RedisCluster)
    assert await ping_redis() == (True, "ok")


async def test_readiness_says_no_when_the_cluster_does_not_answer(settings):
    settings.REDIS_URL = "redis+cluster://127.0.0.1:1"
    ok, detail = await ping_redis()
    assert not ok
    assert detail != "ok"


def test_the_synchronous_client_reaches_keys_on_every_node(redis_cluster, settings):
    settings.REDIS_URL = redis_cluster.url
    client = get_sync_redis()
    names = [f"sync:{uuid.uuid4().hex}" for _ in range(12)]
    for name in names:
        client.set(name, name, ex=60)
    assert client.mget_nonatomic(names) == [name.encode() for name in names]
    assert get_sync_redis() is client  # one per process: it holds the connection pools


def test_the_django_cache_works_on_the_cluster(redis_cluster):
    prefix = f"lpcluster{uuid.uuid4().hex[:8]}"
    code = """
from django.core.cache import cache
names = [f"k{i}" for i in range(12)]
cache.set_many({n: {"n": n} for n in names}, 60)
assert cache.get_many(names + ["missing"]) == {n: {"n": n} for n in names}, "get_many"
assert cache.add("k0", "other") is False and cache.get("k0") == {"n": "k0"}, "add"
cache.set("counter", 1)
assert cache.incr("counter", 41) == 42, "incr"
cache.delete_many(names[:6])
assert set(cache.get_many(names)) == set(names[6:]), "delete_many"
assert cache.delete("k6") and cache.get("k6") is None, "delete"
print("ok")
"""
    done = run_django(code, REDIS_URL=redis_cluster.url, LLMPROXY_REDIS_KEY_PREFIX=prefix)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    held = {port: keys for port, keys in redis_cluster.keys(f"{prefix}:cache:*").items() if keys}
    assert len(held) >= 2, held  # the keys really spread over the nodes


def test_a_cluster_url_lists_its_nodes_and_keeps_credentials_and_tls():
    target = parse_redis_url("rediss+cluster://app:s3cret@10.0.0.1:7000,10.0.0.2:7001/0")
    assert target.cluster
    assert target.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert target.url == "rediss://app:s3cret@10.0.0.1:7000"


def test_a_plain_url_stays_a_single_server_unless_redis_cluster_is_set():
    assert not parse_redis_url("redis://10.0.0.1:6379/2").cluster
    assert parse_redis_url("redis://10.0.0.1:6379", cluster=True).nodes == (("10.0.0.1", 6379),)


@pytest.mark.parametrize(
    "url, problem",
    [
        ("redis+cluster://10.0.0.1", "is not host:port"),
        ("redis+cluster://10.0.0.1:7000/3", "only database 0"),
        ("unix:///run/redis.sock", "over TCP"),
    ],
)
def test_a_malformed_cluster_url_is_refused_with_the_reason(url, problem):
    with pytest.raises(ImproperlyConfigured, match=problem):
        parse_redis_url(url, cluster=True)


def test_the_proxy_refuses_to_start_with_redis_cluster_and_no_redis_url():
    done = run_django("print('started')", REDIS_URL="", REDIS_CLUSTER="true")
    assert done.returncode != 0
    assert "REDIS_CLUSTER=true needs REDIS_URL" in done.stderr
