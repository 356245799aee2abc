"""After known traffic through a real Daphne: latency histograms, cost, cache, quota refusals, upstream
errors and retries in /metrics, and one JSON access line per request in the proxy's log.

Needs the gateway to call llmproxy.metrics.observe_request and llmproxy.logging_json.log_request
at the end of each request (llmproxy/gateway/proxy.py, ProxyConsumer._account).
"""

import uuid

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from audit.models import RequestLog
from providers.models import ModelPolicy
from quotas.models import QuotaLimit
from tests.gateway_helpers import make_key, make_route, wait_for_logs

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PROMPT = "The secret recipe is forty-two pancakes"


def scrape(proxy_server):
    text = httpx.get(f"{proxy_server.base_url}/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def chat(proxy_server, key, model, *, stream=False, headers=None):
    return httpx.post(
        f"{proxy_server.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}", **(headers or {})},
        json={"model": model, "stream": stream, "messages": [{"role": "user", "content": PROMPT}]},
        timeout=30,
    )


def test_latency_time_to_first_byte_and_overhead_are_observed_once_per_request(
    proxy_server, acme, upstream, unique_model
):
    make_route(acme, unique_model, upstream.v1, "mock-1?latency_ms=30", name=f"{unique_model}-up")
    key = make_key(acme)[1]
    before = scrape(proxy_server)
    statuses = [
        chat(proxy_server, key, unique_model, stream=stream).status_code for stream in (False, False, True)
    ]
    wait_for_logs(3, model=unique_model)

    after = scrape(proxy_server)
    labels = {"model": unique_model, "provider": f"{unique_model}-up"}
    assert statuses == [200, 200, 200]
    assert value(after, "llmproxy_request_duration_seconds_count", **labels) == 3
    assert value(after, "llmproxy_time_to_first_byte_seconds_count", **labels) == 3
    # Every answer waited for the upstream's 30 ms; none of the three was under 25 ms.
    assert value(after, "llmproxy_time_to_first_byte_seconds_bucket", le="0.025", **labels) == 0
    assert value(after, "llmproxy_time_to_first_byte_seconds_sum", **labels) <= value(
        after, "llmproxy_request_duration_seconds_sum", **labels
    )
    overhead = value(after, "llmproxy_proxy_overhead_seconds_count") - value(
        before, "llmproxy_proxy_overhead_seconds_count"
    )
    assert (
        overhead >= 3
    )  # the conftest's own scrapes are not proxied requests: exactly 3 unless tests overlap
    assert value(after, "llmproxy_proxy_overhead_seconds_sum") - value(
        before, "llmproxy_proxy_overhead_seconds_sum"
    ) < value(after, "llmproxy_request_duration_seconds_sum", **labels)


def test_cost_is_counted_at_the_routes_prices(proxy_server, acme, upstream, unique_model):
    make_route(acme, unique_model, upstream.v1, input_price="2.5", output_price="10")
    key = make_key(acme)[1]
    answers = [chat(proxy_server, key, unique_model).json() for _ in range(2)]
    rows = wait_for_logs(2, model=unique_model)

    samples = scrape(proxy_server)
    expected = (
        sum(a["usage"]["prompt_tokens"] * 2.5 + a["usage"]["completion_tokens"] * 10 for a in answers) / 1e6
    )
    assert value(samples, "llmproxy_cost_usd_total", tenant="acme", model=unique_model) == pytest.approx(
        expected
    )
    assert float(sum(row.cost for row in rows)) == pytest.approx(expected)


def test_cache_hits_and_misses_are_counted_and_the_hit_as_a_request_of_the_cache(
    proxy_server, acme, upstream, unique_model
):
    acme.cache_ttl_seconds = 300
    acme.save()
    make_route(acme, unique_model, upstream.v1, name=f"{unique_model}-up")
    key = make_key(acme)[1]
    first = chat(proxy_server, key, unique_model)
    second = chat(proxy_server, key, unique_model)
    wait_for_logs(2, model=unique_model)

    samples = scrape(proxy_server)
    assert (first.headers["x-llmproxy-cache"], second.headers["x-llmproxy-cache"]) == ("miss", "hit")
    assert value(samples, "llmproxy_cache_misses_total", tenant="acme", model=unique_model) == 1
    assert value(samples, "llmproxy_cache_hits_total", tenant="acme", model=unique_model) == 1
    assert (
        value(
            samples,
            "llmproxy_requests_total",
            tenant="acme",
            model=unique_model,
            provider="cache",
            status="200",
        )
        == 1
    )


def test_a_request_refused_by_its_quota_is_counted_as_a_quota_rejection(
    proxy_server, acme, upstream, unique_model
):
    make_route(acme, unique_model, upstream.v1)
    api_key, key = make_key(acme)
    QuotaLimit.objects.create(
        tenant=acme, scope="key", api_key=api_key, metric="requests", period="minute", limit=1
    )
    before = value(scrape(proxy_server), "llmproxy_quota_rejections_total", tenant="acme", reason="exceeded")

    statuses = [chat(proxy_server, key, unique_model).status_code for _ in range(3)]
    wait_for_logs(3, model=unique_model)

    after = value(scrape(proxy_server), "llmproxy_quota_rejections_total", tenant="acme", reason="exceeded")
    assert statuses == [200, 429, 429]
    assert after - before == 2


def test_a_failed_attempt_counts_as_an_upstream_error_and_the_next_as_a_retry(
    proxy_server, acme, upstream, unique_model
):
    make_route(
        acme,
        unique_model,
        upstream.v1,
        f"mock-1?fail_first=1&fail_status=503&tag={unique_model}",
        name=f"{unique_model}-flaky",
    )
    ModelPolicy.objects.create(model=unique_model, tenant=acme, max_attempts=2)
    key = make_key(acme)[1]

    response = chat(proxy_server, key, unique_model, stream=True)
    [row] = wait_for_logs(1, model=unique_model)

    samples = scrape(proxy_server)
    flaky = {"provider": f"{unique_model}-flaky", "model": unique_model}
    assert response.status_code == 200 and [a["status"] for a in row.attempts] == [503, 200]
    assert value(samples, "llmproxy_upstream_errors_total", status="503", **flaky) == 1
    assert value(samples, "llmproxy_upstream_retries_total", **flaky) == 1
    assert (
        value(samples, "llmproxy_requests_total", tenant="acme", status="200", **flaky) == 1
    )  # once, not twice


def test_each_request_writes_one_json_access_line_without_the_key_or_the_prompt(
    proxy_server, acme, upstream, unique_model
):
    make_route(acme, unique_model, upstream.v1, name=f"{unique_model}-up")
    api_key, key = make_key(acme)
    request_id = f"req-{uuid.uuid4().hex}"

    answer = chat(proxy_server, key, unique_model, headers={"x-request-id": request_id}).json()
    [row] = wait_for_logs(1, model=unique_model)

    log = proxy_server.log_path.read_text(errors="replace")
    lines = [orjson.loads(line) for line in log.splitlines() if request_id in line]
    [line] = [line for line in lines if line.get("logger") == "llmproxy.access"]
    assert {
        k: line[k]
        for k in (
            "request_id",
            "tenant",
            "key_prefix",
            "model",
            "provider",
            "upstream_model",
            "route_id",
            "status",
            "input_tokens",
            "output_tokens",
            "stream",
        )
    } == {
        "request_id": request_id,
        "tenant": "acme",
        "key_prefix": api_key.prefix,
        "model": unique_model,
        "provider": f"{unique_model}-up",
        "upstream_model": "mock-1",
        "route_id": row.attempts[0]["route"],
        "status": 200,
        "input_tokens": answer["usage"]["prompt_tokens"],
        "output_tokens": answer["usage"]["completion_tokens"],
        "stream": False,
    }
    assert line["latency_ms"] == pytest.approx(
        RequestLog.objects.get(request_id=request_id).latency_ms, abs=5
    )
    secret = key.split("-", 2)[2]
    assert secret not in log and key not in log
    assert PROMPT not in log and "forty-two" not in log
