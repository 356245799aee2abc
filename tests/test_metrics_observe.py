"""llmproxy.metrics.observe_request: what one finished request adds to each metric."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from llmproxy import metrics
from llmproxy.gateway.usage import UsageRecord
from quotas import limiter


@pytest.fixture
def model():
    return f"m-{uuid.uuid4().hex[:10]}"


def attempt(model, provider, status, **fields):
    return {"route": 1, "provider": provider, "model": model, "status": status, "latency_ms": 5.0, **fields}


NOTHING_SENT = dict(
    provider="",
    upstream_model="",
    input_tokens=0,
    output_tokens=0,
    cost=Decimal(0),
    attempts=[],
    ttfb_ms=None,
)


def value(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def record(model, **fields):
    values = dict(
        created_at=datetime.now(UTC),
        request_id="req_1",
        tenant_id=1,
        api_key_id=2,
        key_prefix="lp-AbCdEfGh",
        endpoint="chat",
        model=model,
        status=200,
        provider="primary",
        upstream_model="gpt-4o-mini",
        input_tokens=10,
        output_tokens=20,
        cost=Decimal("0.25"),
        latency_ms=1200.0,
        ttfb_ms=300.0,
        attempts=[
            {
                "route": 1,
                "provider": "primary",
                "model": model,
                "status": 200,
                "latency_ms": 250.0,
                "backoff_ms": 0.0,
                "breaker": "closed",
            }
        ],
    )
    values.update(fields)
    return UsageRecord(**values)


def test_a_request_counts_once_with_its_tokens_cost_and_latencies(model):
    overhead_before = value("llmproxy_proxy_overhead_seconds_count")
    overhead_fast_before = value("llmproxy_proxy_overhead_seconds_bucket", le="0.05")

    metrics.observe_request(record(model), tenant="acme")

    assert value("llmproxy_requests_total", tenant="acme", model=model, provider="primary", status="200") == 1
    assert value("llmproxy_tokens_total", tenant="acme", model=model, kind="input") == 10
    assert value("llmproxy_tokens_total", tenant="acme", model=model, kind="output") == 20
    assert value("llmproxy_cost_usd_total", tenant="acme", model=model) == 0.25
    latency = dict(model=model, provider="primary")
    assert value("llmproxy_request_duration_seconds_count", **latency) == 1
    assert value("llmproxy_request_duration_seconds_sum", **latency) == pytest.approx(1.2)
    assert value("llmproxy_request_duration_seconds_bucket", le="1.0", **latency) == 0
    assert value("llmproxy_request_duration_seconds_bucket", le="2.5", **latency) == 1
    assert value("llmproxy_time_to_first_byte_seconds_sum", **latency) == pytest.approx(0.3)
    # The proxy's own share: 300 ms to the first byte, of which the upstream took 250.
    assert value("llmproxy_proxy_overhead_seconds_count") == overhead_before + 1
    assert value("llmproxy_proxy_overhead_seconds_bucket", le="0.05") == overhead_fast_before + 1


def test_a_retry_counts_the_failed_attempt_and_the_retry_but_the_request_once(model):
    attempts = [
        attempt(model, "flaky", 503, breaker="closed"),
        attempt(model, "flaky", 0, backoff_ms=200.0),
        attempt(model, "steady", 200),
    ]
    metrics.observe_request(record(model, provider="steady", attempts=attempts), tenant="acme")

    assert value("llmproxy_requests_total", tenant="acme", model=model, provider="steady", status="200") == 1
    assert value("llmproxy_upstream_errors_total", provider="flaky", model=model, status="503") == 1
    assert value("llmproxy_upstream_errors_total", provider="flaky", model=model, status="0") == 1
    assert value("llmproxy_upstream_retries_total", provider="flaky", model=model) == 1
    assert value("llmproxy_upstream_retries_total", provider="steady", model=model) == 1


def test_a_route_skipped_by_its_open_breaker_is_no_retry_and_no_upstream_error(model):
    attempts = [attempt(model, "tripped", 0, breaker="open"), attempt(model, "steady", 200)]
    metrics.observe_request(record(model, provider="steady", attempts=attempts), tenant="acme")

    assert value("llmproxy_circuit_skips_total", provider="tripped", model=model) == 1
    assert value("llmproxy_upstream_errors_total", provider="tripped", model=model, status="0") == 0
    assert value("llmproxy_upstream_retries_total", provider="steady", model=model) == 0


def test_cache_hits_and_misses_are_counted_and_a_hit_costs_nothing(model):
    hit = record(
        model,
        provider="cache",
        cache_hit=True,
        upstream_model="",
        input_tokens=0,
        output_tokens=0,
        cost=Decimal(0),
        attempts=[],
    )
    metrics.observe_request(hit, tenant="acme")
    metrics.observe_request(record(model), tenant="acme", cache_missed=True)
    metrics.observe_request(record(model), tenant="acme")  # the cache was not asked

    assert value("llmproxy_cache_hits_total", tenant="acme", model=model) == 1
    assert value("llmproxy_cache_misses_total", tenant="acme", model=model) == 1
    assert value("llmproxy_requests_total", tenant="acme", model=model, provider="cache", status="200") == 1
    assert value("llmproxy_tokens_total", tenant="acme", model=model, kind="input") == 20
    assert value("llmproxy_cost_usd_total", tenant="acme", model=model) == 0.5


def test_quota_refusals_are_counted_by_reason(model):
    tenant = f"t-{model}"
    for status, error in ((429, "quota_exceeded"), (503, "quota_unavailable"), (502, "upstream_error")):
        metrics.observe_request(record(model, status=status, error_type=error, **NOTHING_SENT), tenant=tenant)
    # A stream cut off at the budget: the answer had started (200).
    metrics.observe_request(record(model, status=200, error_type="quota_exceeded"), tenant=tenant)

    assert value("llmproxy_quota_rejections_total", tenant=tenant, reason="exceeded") == 1
    assert value("llmproxy_quota_rejections_total", tenant=tenant, reason="unavailable") == 1
    assert value("llmproxy_quota_rejections_total", tenant=tenant, reason="cut_off") == 1


def test_an_unknown_key_is_counted_without_tokens_or_a_latency_per_tenant(model):
    metrics.observe_request(record(model, status=401, key_prefix="", **NOTHING_SENT), tenant="")

    assert value("llmproxy_requests_total", tenant="", model=model, provider="", status="401") == 1
    no_tokens = {"tenant": "", "model": model, "kind": "input"}
    assert REGISTRY.get_sample_value("llmproxy_tokens_total", no_tokens) is None
    assert value("llmproxy_request_duration_seconds_count", model=model, provider="") == 1


def test_the_limiters_redis_trouble_is_copied_into_a_counter(monkeypatch, model):
    monkeypatch.setattr(metrics, "_limiter_seen", dict(limiter.counters))
    before = value("llmproxy_quota_limiter_events_total", event="redis_fail_open")
    monkeypatch.setitem(limiter.counters, "redis_fail_open", limiter.counters["redis_fail_open"] + 2)

    metrics.observe_request(record(model), tenant="acme")
    metrics.observe_request(record(model), tenant="acme")

    assert value("llmproxy_quota_limiter_events_total", event="redis_fail_open") == before + 2
