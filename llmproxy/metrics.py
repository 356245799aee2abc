"""Prometheus metrics of the gateway, exposed by GET /metrics (llmproxy.ops_views).

The request path counts into prometheus-client metrics (a few microseconds per
request); /metrics renders them. Several processes on one host (deploy/fleet.py,
several Daphnes behind a balancer) must share one PROMETHEUS_MULTIPROC_DIR, an
empty directory that exists before they start: each process then writes its
values to memory-mapped files there and any one of them answers /metrics with
the sum of all (prometheus-client's multiprocess mode; the variable must be in
the environment before the process imports prometheus_client). Empty it before
the processes start again, or counters carry on from the last run's values.

Names and labels (docs/observability.md has the list with examples):
- llmproxy_requests_total{tenant,model,provider,status}: one per client request, retries not counted;
  provider "cache" for a cache hit. llmproxy_tokens_total{tenant,model,kind=input|output}.
- llmproxy_request_duration_seconds, llmproxy_time_to_first_byte_seconds {model,provider}: histograms.
  No tenant label: a histogram per tenant multiplies the series by ~15 buckets; per-tenant latency is on
  the admin's usage dashboard (from the request log).
- llmproxy_proxy_overhead_seconds: the proxy's own time (everything but upstream attempts and backoffs).
- llmproxy_cost_usd_total{tenant,model}.
- llmproxy_cache_hits_total, llmproxy_cache_misses_total {tenant,model}.
- llmproxy_quota_rejections_total{tenant,reason}: exceeded (429 before the upstream call), cut_off (a
  stream stopped at the token budget), unavailable (503: the limiter's Redis did not answer, fail-closed).
- llmproxy_quota_limiter_events_total{event}: redis_fail_open, redis_fail_closed, settle_lost.
- llmproxy_upstream_errors_total{provider,model,status}: failed upstream attempts (status 0: no answer,
  504: timeout); llmproxy_upstream_retries_total{provider,model}: attempts after a request's first;
  llmproxy_circuit_skips_total{provider,model}: routes skipped because their breaker was open.
- llmproxy_circuit_state{route,model,provider}: 0 closed, 1 half-open, 2 open (read when scraped).
- llmproxy_usage_backlog: usage records not yet written to the database.
"""

import asyncio
import atexit
import logging
import os
import weakref

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from llmproxy.gateway.usage import recorder
from quotas.limiter import counters as limiter_counters

log = logging.getLogger(__name__)

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

REQUESTS = Counter(
    "llmproxy_requests",
    "Client requests answered by the proxy (retries not counted).",
    ["tenant", "model", "provider", "status"],
)
TOKENS = Counter("llmproxy_tokens", "Tokens used, by kind.", ["tenant", "model", "kind"])
DURATION = Histogram(
    "llmproxy_request_duration_seconds",
    "Time from a request's arrival to the end of its answer.",
    ["model", "provider"],
    buckets=LATENCY_BUCKETS,
)
TTFB = Histogram(
    "llmproxy_time_to_first_byte_seconds",
    "Time from a request's arrival to the first byte of its answer body.",
    ["model", "provider"],
    buckets=LATENCY_BUCKETS,
)
OVERHEAD = Histogram(
    "llmproxy_proxy_overhead_seconds",
    "The proxy's own time per request: to the first byte, less upstream attempts and backoffs.",
    buckets=OVERHEAD_BUCKETS,
)
COST = Counter("llmproxy_cost_usd", "Cost of the answers, in USD (route prices).", ["tenant", "model"])
CACHE_HITS = Counter("llmproxy_cache_hits", "Requests answered from the response cache.", ["tenant", "model"])
CACHE_MISSES = Counter(
    "llmproxy_cache_misses",
    "Cacheable requests sent upstream (not in the cache, or no-cache).",
    ["tenant", "model"],
)
QUOTA_REJECTIONS = Counter(
    "llmproxy_quota_rejections",
    "Requests refused or cut off by a quota.",
    ["tenant", "reason"],
)
LIMITER_EVENTS = Counter(
    "llmproxy_quota_limiter_events",
    "The limiter's trouble with Redis (quotas.limiter.counters).",
    ["event"],
)
UPSTREAM_ERRORS = Counter(
    "llmproxy_upstream_errors",
    "Failed upstream attempts, by the upstream's status (0: none).",
    ["provider", "model", "status"],
)
UPSTREAM_RETRIES = Counter(
    "llmproxy_upstream_retries",
    "Upstream attempts after a request's first (retries and fallbacks).",
    ["provider", "model"],
)
CIRCUIT_SKIPS = Counter(
    "llmproxy_circuit_skips",
    "Routes skipped because their circuit breaker was open.",
    ["provider", "model"],
)

if MULTIPROCESS:
    from prometheus_client import multiprocess

    # The sum over the live processes; each one's value is refreshed while it has records waiting.
    USAGE_BACKLOG = Gauge(
        "llmproxy_usage_backlog",
        "Usage records not yet written to the database.",
        multiprocess_mode="livesum",
    )
    # A "live" gauge's file must go when its process does, or the sum keeps a dead process's value.
    atexit.register(multiprocess.mark_process_dead, os.getpid())
else:
    USAGE_BACKLOG = Gauge("llmproxy_usage_backlog", "Usage records not yet written to the database.")
    USAGE_BACKLOG.set_function(recorder.backlog)


class _Children(dict):
    """A metric's children by label values. labels() checks its arguments and takes a lock on every
    call (about a microsecond); a dict lookup is what a request can afford for each of its metrics."""

    def __init__(self, metric):
        super().__init__()
        self.metric = metric

    def __missing__(self, labels):
        child = self[labels] = self.metric.labels(*labels)
        return child


_requests, _tokens, _cost = _Children(REQUESTS), _Children(TOKENS), _Children(COST)
_duration, _ttfb = _Children(DURATION), _Children(TTFB)
_cache_hits, _cache_misses = _Children(CACHE_HITS), _Children(CACHE_MISSES)
_QUOTA_REASONS = {"quota_exceeded": "exceeded", "quota_unavailable": "unavailable"}
_limiter_seen: dict = {}
_backlog_refresh: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task]" = (
    weakref.WeakKeyDictionary()
)
BACKLOG_REFRESH_SECONDS = 0.1


def observe_request(record, *, tenant: str, cache_missed: bool = False):
    """Count one finished request from its usage record (llmproxy.gateway.usage.UsageRecord).

    ``cache_missed``: the response cache was consulted (or bypassed with no-cache) and the
    answer came from upstream.
    """
    model, provider, status = record.model, record.provider, record.status
    _requests[tenant, model, provider, str(status)].inc()
    if record.input_tokens or record.output_tokens:
        _tokens[tenant, model, "input"].inc(record.input_tokens)
        _tokens[tenant, model, "output"].inc(record.output_tokens)
    if record.cost:
        _cost[tenant, model].inc(float(record.cost))
    _duration[model, provider].observe(record.latency_ms / 1000)
    upstream_ms = 0.0
    if record.attempts:
        upstream_ms = _observe_attempts(record.attempts)
    if record.ttfb_ms is not None:
        _ttfb[model, provider].observe(record.ttfb_ms / 1000)
        OVERHEAD.observe(max(record.ttfb_ms - upstream_ms, 0.0) / 1000)
    else:
        OVERHEAD.observe(max(record.latency_ms - upstream_ms, 0.0) / 1000)
    if record.cache_hit:
        _cache_hits[tenant, model].inc()
    elif cache_missed:
        _cache_misses[tenant, model].inc()
    if record.error_type:
        reason = _QUOTA_REASONS.get(record.error_type)
        if reason == "exceeded" and status == 200:
            reason = "cut_off"
        if reason is not None:
            QUOTA_REJECTIONS.labels(tenant, reason).inc()
    _copy_limiter_events()
    if MULTIPROCESS:
        _refresh_backlog()


def _observe_attempts(attempts) -> float:
    """Count the upstream attempts of one request; the time they and their backoffs took, in ms."""
    spent = 0.0
    sent = 0
    for attempt in attempts:
        provider, model = attempt.get("provider", ""), attempt.get("model", "")
        spent += attempt.get("latency_ms", 0.0) + attempt.get("backoff_ms", 0.0)
        if attempt.get("breaker") == "open":
            CIRCUIT_SKIPS.labels(provider, model).inc()
            continue
        sent += 1
        if sent > 1:
            UPSTREAM_RETRIES.labels(provider, model).inc()
        if attempt.get("status") != 200:
            UPSTREAM_ERRORS.labels(provider, model, str(attempt.get("status", 0))).inc()
    return spent


def _copy_limiter_events():
    # The limiter counts its Redis trouble in a plain dict (no Prometheus on its hot path); the
    # increments since the last request are copied here, at the end of the request that caused them.
    if not limiter_counters:
        return
    for event, total in limiter_counters.items():
        seen = _limiter_seen.get(event, 0)
        if total > seen:
            LIMITER_EVENTS.labels(event).inc(total - seen)
            _limiter_seen[event] = total


def _refresh_backlog():
    # In multiprocess mode a gauge is a number in a file, not a function called at scrape time: this
    # process writes its backlog now, then again every BACKLOG_REFRESH_SECONDS until it is written out.
    USAGE_BACKLOG.set(recorder.backlog())
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    task = _backlog_refresh.get(loop)
    if task is None or task.done():
        _backlog_refresh[loop] = loop.create_task(_refresh_backlog_until_empty())


async def _refresh_backlog_until_empty():
    while True:
        await asyncio.sleep(BACKLOG_REFRESH_SECONDS)
        backlog = recorder.backlog()
        USAGE_BACKLOG.set(backlog)
        if not backlog:
            return


def refresh_own_backlog():
    """This process's backlog, written before it answers a scrape (multiprocess mode)."""
    if MULTIPROCESS:
        USAGE_BACKLOG.set(recorder.backlog())


# --- the scrape ------------------------------------------------------------------------------

_CIRCUIT_VALUES = {"closed": 0, "half-open": 1, "open": 2}


class CircuitStates:
    """llmproxy_circuit_state of every active route, read from the breakers when scraped.

    With Redis the breakers are shared, so any process tells the truth; without it each process
    has its own, and the one that answers the scrape speaks for itself.
    """

    def collect(self):
        from django.db import DatabaseError
        from prometheus_client.core import GaugeMetricFamily

        from providers import breaker
        from providers.models import ModelRoute

        family = GaugeMetricFamily(
            "llmproxy_circuit_state",
            "Circuit breaker of each route: 0 closed, 1 half-open, 2 open.",
            labels=["route", "model", "provider"],
        )
        try:
            routes = list(
                ModelRoute.objects.usable().values_list("id", "model", "provider__name").order_by("id")
            )
        except DatabaseError as exc:
            # The other metrics matter most when the database is in trouble: answer with them.
            log.warning("llmproxy_circuit_state left out of a scrape: the database said %s", exc)
            routes = []
        states = breaker.states(route_id for route_id, _, _ in routes) if routes else {}
        for route_id, model, provider in routes:
            state = states.get(route_id)
            if state is not None:  # None: Redis did not answer; no value rather than a wrong one
                family.add_metric([str(route_id), model, provider], _CIRCUIT_VALUES.get(state.state, 0))
        yield family


class _Together:
    def __init__(self, *collectors):
        self.collectors = collectors

    def collect(self):
        for collector in self.collectors:
            yield from collector.collect()


def exposition() -> bytes:
    """The text /metrics answers (synchronous: reads files, the database and Redis)."""
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        refresh_own_backlog()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(_Together(registry, CircuitStates()))
