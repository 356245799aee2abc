"""The response cache through the proxy: hits, misses, stream combinations, stampedes, isolation."""

import concurrent.futures

import httpx
import openai
import pytest

from quotas.models import QuotaLimit
from tests.gateway_helpers import client, make_key, make_route, wait_for_logs

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HELLO = [{"role": "user", "content": "Hello cache"}]


@pytest.fixture
def cached_tenant(acme):
    acme.cache_ttl_seconds = 300
    acme.save()
    return acme


def post(proxy_server, key, model, *, stream=False, headers=None, **body):
    response = httpx.post(
        f"{proxy_server.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}", **(headers or {})},
        json={"model": model, "messages": HELLO, "stream": stream, **body},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response


def streamed_text(response):
    import json

    text = ""
    for line in response.text.splitlines():
        if line.startswith("data: {"):
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices", []):
                text += (choice.get("delta") or {}).get("content") or ""
    assert response.text.rstrip().endswith("data: [DONE]")
    return text


@pytest.mark.parametrize(
    ("first_streamed", "then_streamed"), [(False, False), (False, True), (True, False), (True, True)]
)
def test_a_repeated_request_is_a_hit_however_either_was_streamed(
    proxy_server, cached_tenant, upstream, unique_model, first_streamed, then_streamed
):
    make_route(cached_tenant, unique_model, upstream.v1)
    _, key = make_key(cached_tenant)
    first = post(proxy_server, key, unique_model, stream=first_streamed)
    assert first.headers["x-llmproxy-cache"] == "miss"
    second = post(proxy_server, key, unique_model, stream=then_streamed)
    assert second.headers["x-llmproxy-cache"] == "hit"
    texts = [
        streamed_text(r) if s else r.json()["choices"][0]["message"]["content"]
        for r, s in ((first, first_streamed), (second, then_streamed))
    ]
    assert texts[0] == texts[1] == "Mock answer to: Hello cache"
    assert len(upstream.requests()) == 1
    rows = wait_for_logs(2, model=unique_model)
    assert [(r.cache_hit, r.provider) for r in rows] == [(False, f"up-{unique_model}"), (True, "cache")]
    assert rows[1].input_tokens == rows[1].output_tokens == 0


def test_the_official_client_gets_identical_answers_from_the_cache(
    proxy_server, cached_tenant, upstream, unique_model
):
    make_route(cached_tenant, unique_model, upstream.v1)
    api = client(proxy_server, make_key(cached_tenant)[1])
    one = api.chat.completions.create(model=unique_model, messages=HELLO, temperature=0)
    two = api.chat.completions.create(model=unique_model, messages=HELLO, temperature=0)
    assert one.choices[0].message.content == two.choices[0].message.content
    assert one.usage == two.usage
    assert len(upstream.requests()) == 1


def test_the_cache_is_off_by_default(proxy_server, acme, upstream, unique_model):
    make_route(acme, unique_model, upstream.v1)
    _, key = make_key(acme)
    assert "x-llmproxy-cache" not in post(proxy_server, key, unique_model).headers
    post(proxy_server, key, unique_model)
    assert len(upstream.requests()) == 2


def test_no_cache_refreshes_and_no_store_bypasses(proxy_server, cached_tenant, upstream, unique_model):
    make_route(cached_tenant, unique_model, upstream.v1)
    _, key = make_key(cached_tenant)
    post(proxy_server, key, unique_model)
    refreshed = post(proxy_server, key, unique_model, headers={"cache-control": "no-cache"})
    assert refreshed.headers["x-llmproxy-cache"] == "miss"
    bypassed = post(proxy_server, key, unique_model, headers={"x-llmproxy-cache": "no-store"})
    assert bypassed.headers["x-llmproxy-cache"] == "miss"
    assert len(upstream.requests()) == 3
    assert post(proxy_server, key, unique_model).headers["x-llmproxy-cache"] == "hit"
    # no-store on a new request stores nothing.
    post(proxy_server, key, unique_model, headers={"cache-control": "no-store"}, max_tokens=7)
    assert post(proxy_server, key, unique_model, max_tokens=7).headers["x-llmproxy-cache"] == "miss"


def test_twenty_identical_concurrent_requests_make_one_upstream_call(
    proxy_server, cached_tenant, upstream, unique_model
):
    make_route(cached_tenant, unique_model, upstream.v1, upstream_model="mock-1?latency_ms=500")
    _, key = make_key(cached_tenant)
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(lambda _: post(proxy_server, key, unique_model), range(20)))
    assert len(upstream.requests()) == 1
    assert sorted(r.headers["x-llmproxy-cache"] for r in responses) == ["hit"] * 19 + ["miss"]


def test_entries_never_cross_tenants(proxy_server, cached_tenant, globex, upstream, unique_model):
    globex.cache_ttl_seconds = 300
    globex.save()
    make_route(None, unique_model, upstream.v1, shared=True)
    post(proxy_server, make_key(cached_tenant)[1], unique_model)
    other = post(proxy_server, make_key(globex)[1], unique_model)
    assert other.headers["x-llmproxy-cache"] == "miss"
    assert len(upstream.requests()) == 2


def test_a_failed_or_cut_off_answer_is_never_stored(proxy_server, cached_tenant, upstream, unique_model):
    make_route(cached_tenant, unique_model, upstream.v1, upstream_model="mock-1?chunks=6&fail_after_chunks=3")
    api = client(proxy_server, make_key(cached_tenant)[1])
    for _ in range(2):
        with pytest.raises(openai.APIError):
            for _chunk in api.chat.completions.create(model=unique_model, messages=HELLO, stream=True):
                pass
    assert len(upstream.requests()) == 2


def test_nondeterministic_requests_can_be_excluded(proxy_server, cached_tenant, upstream, unique_model):
    cached_tenant.cache_skip_nondeterministic = True
    cached_tenant.save()
    make_route(cached_tenant, unique_model, upstream.v1)
    _, key = make_key(cached_tenant)
    post(proxy_server, key, unique_model, temperature=0.8)
    post(proxy_server, key, unique_model, temperature=0.8)
    assert len(upstream.requests()) == 2
    post(proxy_server, key, unique_model, temperature=0)
    assert post(proxy_server, key, unique_model, temperature=0).headers["x-llmproxy-cache"] == "hit"


def test_a_hit_counts_as_a_request_for_quotas(proxy_server, cached_tenant, upstream, unique_model):
    make_route(cached_tenant, unique_model, upstream.v1)
    api_key, key = make_key(cached_tenant)
    QuotaLimit.objects.create(
        tenant=cached_tenant, scope="key", api_key=api_key, metric="requests", period="hour", limit=2
    )
    post(proxy_server, key, unique_model)
    assert post(proxy_server, key, unique_model).headers["x-llmproxy-cache"] == "hit"
    third = httpx.post(
        f"{proxy_server.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": unique_model, "messages": HELLO},
    )
    assert third.status_code == 429


def test_clear_cache_empties_a_tenants_cache_in_the_running_proxy(
    proxy_server, cached_tenant, upstream, unique_model
):
    import time

    from django.core.management import call_command

    make_route(cached_tenant, unique_model, upstream.v1)
    _, key = make_key(cached_tenant)
    post(proxy_server, key, unique_model)
    assert post(proxy_server, key, unique_model).headers["x-llmproxy-cache"] == "hit"
    call_command("clear_cache", "--tenant", "acme")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if post(proxy_server, key, unique_model).headers["x-llmproxy-cache"] == "miss":
            return
        time.sleep(0.2)
    pytest.fail("the cache was not cleared within 5 seconds")
