"""Redis clients: one asyncio client per event loop for the hot path, one synchronous client per
process for the admin and commands, and a django-redis client class for the cache on a Cluster.

A single server is named by `redis://`, `rediss://` or `unix://`. A Redis Cluster is named by
`redis+cluster://[user:password@]host:port[,host:port...]` (or `rediss+cluster://`), or by a plain
`redis://host:port` URL with REDIS_CLUSTER=true; the nodes listed are only where the client starts
to discover the cluster. Scripts run on a Cluster because all the keys one script touches share a
hash tag (`{...}`) and so one slot; the cluster clients route each call to that slot's node.
"""

import asyncio
import functools
import hashlib
import threading
import weakref
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import NoScriptError

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

# Fail fast: a request must not wait long on a Redis that is away (callers fall back or refuse).
_TIMEOUTS = {"socket_connect_timeout": 1.0, "socket_timeout": 1.0}


@dataclass(frozen=True)
class RedisTarget:
    url: str  # what redis-py's from_url takes: the first node's URL when it is a cluster
    cluster: bool
    nodes: tuple = ()  # (host, port) of every node listed, for a cluster


def parse_redis_url(url: str, cluster: bool = False) -> RedisTarget:
    """What REDIS_URL (and REDIS_CLUSTER) name; ImproperlyConfigured when a cluster URL is malformed."""
    parts = urlsplit(url)
    scheme = CLUSTER_SCHEMES.get(parts.scheme)
    if scheme is None and not cluster:
        return RedisTarget(url, cluster=False)
    if parts.scheme == "unix":
        raise ImproperlyConfigured("REDIS_URL: a Redis Cluster is reached over TCP, not unix://")
    if parts.path not in ("", "/", "/0"):
        raise ImproperlyConfigured("REDIS_URL: a Redis Cluster has only database 0")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    nodes = []
    for node in hostlist.split(","):
        host, _, port = node.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ImproperlyConfigured(f"REDIS_URL: {node!r} is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    netloc = f"{userinfo}@{hostlist.split(',')[0]}" if userinfo else hostlist.split(",")[0]
    first = urlunsplit((scheme or parts.scheme, netloc, "", parts.query, ""))
    return RedisTarget(first, cluster=True, nodes=tuple(nodes))


# On the hot path (every get_redis()): parse each URL once.
_parsed = functools.lru_cache(maxsize=16)(parse_redis_url)


def configured_target() -> RedisTarget | None:
    if not settings.REDIS_URL:
        return None
    return _parsed(settings.REDIS_URL, getattr(settings, "REDIS_CLUSTER", False))


def _async_client(target: RedisTarget):
    if not target.cluster:
        import redis.asyncio as aioredis

        return aioredis.Redis.from_url(target.url, health_check_interval=30, max_connections=256, **_TIMEOUTS)
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    return RedisCluster.from_url(
        target.url,
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        health_check_interval=30,
        max_connections=256,  # per node
        **_TIMEOUTS,
    )


def sync_client(target: RedisTarget):
    """A new synchronous client (thread-safe; keep it: it holds a connection pool)."""
    if not target.cluster:
        import redis

        return redis.Redis.from_url(target.url, **_TIMEOUTS)
    from redis.cluster import ClusterNode, RedisCluster

    return RedisCluster.from_url(
        target.url, startup_nodes=[ClusterNode(host, port) for host, port in target.nodes], **_TIMEOUTS
    )


_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple]" = weakref.WeakKeyDictionary()
_sync_clients: dict = {}
_sync_lock = threading.Lock()


def get_redis():
    """The running loop's client, or None when REDIS_URL is not set (embedded mode)."""
    target = configured_target()
    if target is None:
        return None
    loop = asyncio.get_running_loop()
    entry = _clients.get(loop)
    # Keyed by the target too: tests point settings at another server between runs of one loop.
    if entry is None or entry[0] != target:
        entry = (target, _async_client(target))
        _clients[loop] = entry
    return entry[1]


def get_sync_redis():
    """This process's synchronous client (admin pages, commands), or None without REDIS_URL."""
    target = configured_target()
    if target is None:
        return None
    with _sync_lock:
        client = _sync_clients.get(target)
        if client is None:
            client = _sync_clients[target] = sync_client(target)
    return client


async def ping_redis():
    client = get_redis()
    if client is None:
        return True, "not configured"
    try:
        await client.ping()  # on a cluster: every node must answer
        return True, "ok"
    except Exception as exc:  # connection refused, timeout, auth, cluster down...
        return False, type(exc).__name__


class Script:
    """EVALSHA, loading the script when the server does not know it (first use, restart, SCRIPT FLUSH)."""

    def __init__(self, source):
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1

    async def run(self, client, keys, args):
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)

    def run_sync(self, client, keys, args):
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self.source)
            return client.evalsha(self.sha, len(keys), *keys, *args)


def _cluster_cache_client_class():
    from django_redis.client import DefaultClient
    from django_redis.exceptions import ConnectionInterrupted
    from redis.exceptions import RedisError

    class ClusterCacheClient(DefaultClient):
        """django-redis on a Redis Cluster: a cluster client, and reads of many keys split by slot."""

        def connect(self, index=0):
            return sync_client(parse_redis_url(self._server[index], cluster=True))

        def disconnect(self, index=0, client=None):
            client = client if client is not None else self._clients[index]
            if client is not None:
                client.close()

        def get_many(self, keys, version=None, client=None):
            if client is None:
                client = self.get_client(write=False)
            if not keys:
                return {}
            names = {self.make_key(k, version=version): k for k in keys}
            try:
                # MGET needs its keys in one slot; the cluster client splits them and keeps the order.
                values = client.mget_nonatomic(list(names))
            except (RedisError, OSError) as exc:
                raise ConnectionInterrupted(connection=client) from exc
            found = zip(names, values, strict=True)
            return {names[name]: self.decode(value) for name, value in found if value is not None}

    return ClusterCacheClient


def __getattr__(name):
    # Built on first use: django-redis is imported only by processes whose cache is on a cluster.
    if name == "ClusterCacheClient":
        cls = _cluster_cache_client_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)
