"""Redis stops and starts again under a live proxy: quotas follow each tenant's policy, nothing is lost.

A Daphne keeps its quotas, response cache and circuit breakers on a private
redis-server that this test stops while requests are flowing and starts
again. Like a production one, that Redis keeps its data on disk (AOF), so
what it held before the outage is there after it. While it is away, a
fail-closed tenant's requests get 503 (``quota_unavailable``) and a fail-open
tenant's are limited in-process; once it is back, both are limited on Redis
again. Every request sent has its RequestLog row and is counted in the hourly
rollups, and once the load is over Redis holds no reservation: a request
reserved there before the outage and answered during it is charged there
once it is back.
"""

import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
from django.db.models import Sum

from audit.models import RequestLog
from quotas.applicable import as_limit
from quotas.limiter import current_usage
from quotas.models import QuotaLimit, TokenUsageMetric
from tests import servers
from tests.conftest import ARTIFACTS
from tests.gateway_helpers import make_key, make_route
from tests.limiter_support import REDIS_SERVER, RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# The limiter asks a Redis that failed again after 1 s (quotas.limiter.REDIS_RETRY_SECONDS).
RECOVERY_SECONDS = 2.0


class PersistentRedis(RedisServer):
    """A private redis-server that writes every change to an append-only file and reads it when it starts."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="redis-restart-")
        super().__init__()

    def start(self):
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir]
        argv += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return
            except Exception:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}")
                time.sleep(0.05)


@pytest.fixture(scope="module")
def redis_server():
    server = PersistentRedis()
    yield server
    if server.process.poll() is None:
        server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def proxy(django_db_setup, django_db_blocker, mock_upstream, redis_server, tmp_path_factory):
    with django_db_blocker.unblock():
        process, base = servers.start_daphne(
            ARTIFACTS / "logs",
            name="daphne-redis-restart",
            REDIS_URL=redis_server.url,
            LLMPROXY_VAR_DIR=tmp_path_factory.mktemp("redis-restart"),
        )
    process.base_url = base
    yield process
    process.stop()


@pytest.fixture
def on_private_redis(settings, redis_server):
    """This process reads the quotas where the proxy keeps them."""
    settings.REDIS_URL = redis_server.url


@pytest.fixture
def redis_up(redis_server):
    """Redis is running when the test ends, whatever happened in it."""
    yield redis_server
    if redis_server.process.poll() is not None:
        redis_server.start()


@pytest.fixture
def proxy_log(proxy):
    """What the proxy logs during the test."""
    start = proxy.log_path.stat().st_size

    def written():
        with open(proxy.log_path, "rb") as log:
            log.seek(start)
            return log.read().decode(errors="replace")

    return written


@dataclass
class Sent:
    tenant: str
    stream: bool
    started: float
    ended: float
    status: int
    code: str
    request_id: str


class Load:
    """Threads sending plain and streamed requests for two tenants until stopped; every answer is kept."""

    def __init__(self, base, model, keys, workers=6):
        self.base, self.model, self.keys, self.workers = base, model, keys, workers
        self.sent: list[Sent] = []
        self.failures: list[str] = []
        self.stopping = threading.Event()
        self.pool = ThreadPoolExecutor(workers)
        self.futures = []

    def start(self):
        self.futures = [self.pool.submit(self._worker, n) for n in range(self.workers)]

    def stop(self):
        self.stopping.set()
        for future in self.futures:
            future.result()
        self.pool.shutdown()

    def _worker(self, n):
        tenants = sorted(self.keys)
        with httpx.Client(timeout=30) as http:
            i = 0
            while not self.stopping.is_set():
                tenant = tenants[(n + i) % len(tenants)]
                stream = (i // len(tenants)) % 2 == 1
                i += 1
                started = time.monotonic()
                try:
                    response = http.post(
                        f"{self.base}/v1/chat/completions",
                        headers={"authorization": f"Bearer {self.keys[tenant]}"},
                        # Each its own question: no answer comes from the response cache.
                        json={
                            "model": self.model,
                            "messages": [{"role": "user", "content": f"Hello {n}-{i}"}],
                            "stream": stream,
                        },
                    )
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                code = ""
                if response.status_code != 200:
                    code = response.json()["error"]["code"]
                elif stream and not response.text.endswith("data: [DONE]\n\n"):
                    code = "truncated stream"
                self.sent.append(
                    Sent(
                        tenant,
                        stream,
                        started,
                        time.monotonic(),
                        response.status_code,
                        code,
                        response.headers["x-request-id"],
                    )
                )


def rows_for(model, expected, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        rows = list(RequestLog.objects.filter(model=model))
        if len(rows) >= expected or time.monotonic() > deadline:
            time.sleep(0.3)  # and no duplicate arriving late
            return list(RequestLog.objects.filter(model=model))
        time.sleep(0.1)


def quota_state(limit):
    """(used, reserved) of LIMIT's window on the private Redis (retried: a pooled connection may be stale)."""
    for attempt in range(3):
        try:
            found = current_usage(as_limit(limit))
            return found["used"], found["reserved"]
        except Exception:
            if attempt == 2:
                raise
            time.sleep(0.2)


def test_requests_flow_through_a_redis_restart_and_each_is_logged_and_settled(
    proxy, proxy_log, redis_up, on_private_redis, acme, globex, mock_upstream, unique_model
):
    globex.redis_down_policy = "open"
    globex.cache_ttl_seconds = 60
    globex.save()
    limits, keys = {}, {}
    for tenant in (acme, globex):
        make_route(
            tenant,
            unique_model,
            f"{mock_upstream}/v1",
            upstream_model="mock-1?latency_ms=30&chunks=4&chunk_delay_ms=40",
            name=f"up-{tenant.slug}-{unique_model}",
        )
        api_key, keys[tenant.slug] = make_key(tenant)
        limits[tenant.slug] = [
            QuotaLimit.objects.create(
                tenant=tenant, scope="key", api_key=api_key, metric=metric, period="month", limit=limit
            )
            for metric, limit in (("requests", 100_000), ("tokens", 100_000_000))
        ]
    load = Load(proxy.base_url, unique_model, keys)
    load.start()
    try:
        time.sleep(1.0)
        redis_up.stop()
        stopped_at = time.monotonic()
        time.sleep(2.5)
        redis_up.start()
        restarted_at = time.monotonic()
        time.sleep(RECOVERY_SECONDS + 1.5)
    finally:
        load.stop()
    recovered_at = restarted_at + RECOVERY_SECONDS

    assert load.failures == []
    sent = load.sent
    by_tenant = {slug: [s for s in sent if s.tenant == slug] for slug in keys}
    # The fail-closed tenant: 503 while Redis was away and only then; the fail-open one: always served.
    assert Counter((s.status, s.code) for s in by_tenant["acme"]).keys() == {
        (200, ""),
        (503, "quota_unavailable"),
    }
    assert all(stopped_at - 1 < s.started < recovered_at for s in by_tenant["acme"] if s.status == 503)
    assert {(s.status, s.code) for s in by_tenant["globex"]} == {(200, "")}
    # Served again on Redis once it is back.
    after = [s for s in sent if s.started > recovered_at]
    assert after and {s.status for s in after} == {200}

    rows = rows_for(unique_model, len(sent))
    assert sorted((r.request_id, r.status) for r in rows) == sorted((s.request_id, s.status) for s in sent)
    for slug, tenant in (("acme", acme), ("globex", globex)):
        mine = [r for r in rows if r.tenant_id == tenant.id]
        rollup = TokenUsageMetric.objects.filter(tenant=tenant, model=unique_model).aggregate(
            requests=Sum("requests"),
            input=Sum("input_tokens"),
            output=Sum("output_tokens"),
            errors=Sum("errors"),
        )
        assert rollup == {
            "requests": len(mine),
            "input": sum(r.input_tokens for r in mine),
            "output": sum(r.output_tokens for r in mine),
            "errors": sum(1 for r in mine if r.status >= 400),
        }, slug

        # Every hold on Redis was settled, those of the requests it was away for at the end of theirs
        # included; it counts the requests it reserved, before the outage and after it. (Which of
        # the requests around the outage's edges it reserved, the test cannot tell exactly.)
        requests_limit, tokens_limit = limits[slug]
        served = [(r, s) for r, s in _matched(mine, sent) if r.status == 200]
        surely_on_redis = [r for r, s in served if s.ended < stopped_at or s.started > recovered_at]
        maybe_on_redis = [r for r, s in served if s.started < stopped_at or s.started > restarted_at]
        used, reserved = quota_state(requests_limit)
        assert reserved == 0, slug
        assert len(surely_on_redis) <= used <= len(maybe_on_redis) + load.workers, slug
        used, reserved = quota_state(tokens_limit)
        assert reserved == 0, slug
        assert used >= sum(r.input_tokens + r.output_tokens for r in surely_on_redis), slug

    # An outage is told in a few lines (each kind of trouble once a minute), not a line per request.
    log = proxy_log()
    assert "Traceback" not in log
    troubles = [line for line in log.splitlines() if '"level":"WARNING"' in line or '"level":"ERROR"' in line]
    assert 0 < len(troubles) <= 10, troubles


def _matched(rows, sent):
    by_id = {s.request_id: s for s in sent}
    return [(r, by_id[r.request_id]) for r in rows]


def test_a_fail_open_tenant_is_limited_in_the_proxy_while_redis_is_away_and_on_redis_once_it_is_back(
    proxy, redis_up, globex, mock_upstream, unique_model
):
    globex.redis_down_policy = "open"
    globex.save()
    make_route(globex, unique_model, f"{mock_upstream}/v1")
    api_key, plain = make_key(globex)
    QuotaLimit.objects.create(
        tenant=globex, scope="key", api_key=api_key, metric="requests", period="hour", limit=3
    )

    def send():
        response = httpx.post(
            f"{proxy.base_url}/v1/chat/completions",
            headers={"authorization": f"Bearer {plain}"},
            json={"model": unique_model, "messages": [{"role": "user", "content": "Hello"}]},
            timeout=30,
        )
        return response.status_code, response.headers.get("x-ratelimit-remaining-requests")

    assert send() == (200, "2")  # on Redis
    redis_up.stop()
    try:
        # The proxy's own count starts from nothing, and still stops at the limit.
        assert [send() for _ in range(4)] == [(200, "2"), (200, "1"), (200, "0"), (429, "0")]
    finally:
        redis_up.start()
    time.sleep(RECOVERY_SECONDS)
    # Back on Redis, which has kept the request it counted before the outage.
    assert [send() for _ in range(3)] == [(200, "1"), (200, "0"), (429, "0")]
    rows = rows_for(unique_model, 8)
    assert sorted(r.status for r in rows) == [200] * 6 + [429] * 2
