"""Quotas through the proxy: 429s, rate-limit headers, cut-down answers, one limit across processes."""

import concurrent.futures
import time

import httpx
import openai
import pytest

from quotas.models import QuotaLimit
from tests import servers
from tests.conftest import ARTIFACTS
from tests.gateway_helpers import client, make_key, make_route, wait_for_logs
from tests.limiter_support import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HELLO = [{"role": "user", "content": "Hello"}]


def set_quota(tenant, metric, period, limit, *, key=None):
    return QuotaLimit.objects.create(
        tenant=tenant,
        scope="key" if key else "tenant",
        api_key=key,
        metric=metric,
        period=period,
        limit=limit,
    )


def chat(proxy_server, plain, model, **extra):
    return httpx.post(
        f"{proxy_server.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {plain}"},
        json={"model": model, "messages": HELLO, **extra},
        timeout=30,
    )


def test_a_request_past_the_limit_is_a_rate_limit_error_with_retry_after(
    proxy_server, acme, upstream, unique_model
):
    make_route(acme, unique_model, upstream.v1)
    api_key, plain = make_key(acme)
    set_quota(acme, "requests", "minute", 3, key=api_key)
    remaining = []
    for _ in range(3):
        response = chat(proxy_server, plain, unique_model)
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit-requests"] == "3"
        remaining.append(response.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"]
    with pytest.raises(openai.RateLimitError) as failure:
        client(proxy_server, plain).chat.completions.create(model=unique_model, messages=HELLO)
    response = failure.value.response
    assert failure.value.code == "quota_exceeded"
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert "requests per minute" in failure.value.message
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    rows = wait_for_logs(4, model=unique_model)
    assert [r.status for r in rows] == [200, 200, 200, 429]
    assert len(upstream.requests()) == 3


def test_tenant_and_key_limits_combine_and_the_tightest_wins(proxy_server, acme, upstream, unique_model):
    make_route(acme, unique_model, upstream.v1)
    api_key, plain = make_key(acme)
    other_key, other_plain = make_key(acme)
    set_quota(acme, "requests", "hour", 3)
    set_quota(acme, "requests", "hour", 10, key=api_key)
    statuses = [
        chat(proxy_server, p, unique_model).status_code for p in (plain, other_plain, plain, other_plain)
    ]
    assert statuses == [200, 200, 200, 429]


def test_the_answer_is_cut_down_to_the_token_budget_left(proxy_server, acme, upstream, unique_model):
    make_route(acme, unique_model, upstream.v1)
    api_key, plain = make_key(acme)
    set_quota(acme, "tokens", "day", 100, key=api_key)
    response = chat(proxy_server, plain, unique_model, max_tokens=5000)
    assert response.status_code == 200
    sent = upstream.requests()[0]["body"]["max_tokens"]
    assert 0 < sent < 100
    assert int(response.headers["x-ratelimit-limit-tokens"]) == 100


def test_a_stream_running_past_the_budget_is_cut_off_with_an_error_event(
    proxy_server, acme, upstream, unique_model
):
    # This upstream (the built-in mock) ignores max_tokens, as some do.
    provider, _ = make_route(acme, unique_model, "", upstream_model="mock-1?chunks=40", kind="mock")
    provider.options = {"reply": "word " * 200}
    provider.save()
    api_key, plain = make_key(acme)
    set_quota(acme, "tokens", "day", 60, key=api_key)
    stream = client(proxy_server, plain).chat.completions.create(
        model=unique_model, messages=HELLO, stream=True
    )
    with pytest.raises(openai.APIError, match="cut off"):
        for _ in stream:
            pass
    [row] = wait_for_logs(1, model=unique_model)
    assert row.error_type == "quota_exceeded"
    assert row.output_tokens > 0


def test_concurrent_requests_against_a_limit_of_ten_admit_exactly_ten(
    proxy_server, acme, upstream, unique_model
):
    make_route(acme, unique_model, upstream.v1, upstream_model="mock-1?latency_ms=50")
    api_key, plain = make_key(acme)
    set_quota(acme, "requests", "hour", 10, key=api_key)
    with concurrent.futures.ThreadPoolExecutor(max_workers=25) as pool:
        statuses = list(pool.map(lambda _: chat(proxy_server, plain, unique_model).status_code, range(50)))
    assert statuses.count(200) == 10
    assert statuses.count(429) == 40


@pytest.fixture(scope="module")
def shared_redis():
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def three_proxies(django_db_setup, django_db_blocker, shared_redis, mock_upstream):
    started = []
    with django_db_blocker.unblock():
        for i in range(3):
            started.append(
                servers.start_daphne(ARTIFACTS / "logs", name=f"quota-daphne-{i}", REDIS_URL=shared_redis.url)
            )
    yield [base for _, base in started]
    for process, _ in started:
        process.stop()


def test_three_live_processes_sharing_redis_enforce_one_global_limit(
    three_proxies, acme, upstream, unique_model
):
    make_route(acme, unique_model, upstream.v1)
    api_key, plain = make_key(acme)
    set_quota(acme, "requests", "hour", 12, key=api_key)

    def call(i):
        base = three_proxies[i % 3]
        return httpx.post(
            f"{base}/v1/chat/completions",
            headers={"authorization": f"Bearer {plain}"},
            json={"model": unique_model, "messages": HELLO},
            timeout=30,
        ).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(call, range(36)))
    assert statuses.count(200) == 12, statuses
    assert statuses.count(429) == 24


def test_a_tenant_that_fails_closed_gets_503_when_redis_is_down(
    django_db_setup, django_db_blocker, acme, upstream, unique_model
):
    with django_db_blocker.unblock():
        process, base = servers.start_daphne(
            ARTIFACTS / "logs", name="quota-daphne-noredis", REDIS_URL="redis://127.0.0.1:1/0"
        )
    try:
        make_route(acme, unique_model, upstream.v1)
        api_key, plain = make_key(acme)
        set_quota(acme, "requests", "hour", 5, key=api_key)
        closed = httpx.post(
            f"{base}/v1/chat/completions",
            headers={"authorization": f"Bearer {plain}"},
            json={"model": unique_model, "messages": HELLO},
            timeout=30,
        )
        assert closed.status_code == 503
        assert closed.json()["error"]["code"] == "quota_unavailable"
        acme.redis_down_policy = "open"
        acme.save()
        time.sleep(1.2)  # the proxy re-reads the tenant within its config TTL
        opened = httpx.post(
            f"{base}/v1/chat/completions",
            headers={"authorization": f"Bearer {plain}"},
            json={"model": unique_model, "messages": HELLO},
            timeout=30,
        )
        assert opened.status_code == 200
        assert opened.headers["x-ratelimit-limit-requests"] == "5"
    finally:
        process.stop()
