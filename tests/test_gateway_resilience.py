"""Faults injected at the local upstream, seen through the official openai client and the request log.

Every fault is tried under every strategy. The model has a faulty route F that
each strategy tries first (priority 0, weight 1, cheaper, measured by nobody
yet, first in turn) and a healthy standby H (priority 1, weight 0, dearer).
"""

import time

import httpx
import openai
import pytest

from providers.models import ModelPolicy, Provider
from tests.gateway_helpers import client, make_key, make_route, wait_for_logs

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HELLO = [{"role": "user", "content": "Hello"}]
STRATEGIES = [choice.value for choice in ModelPolicy.Strategy]


@pytest.fixture
def key(acme):
    return make_key(acme)[1]


def faulty_and_healthy(acme, upstream, model, fault, *, timeout=0.5, **policy):
    make_route(
        acme,
        model,
        upstream.v1,
        upstream_model=f"mock-1?{fault}",
        name=f"{model}-F",
        priority=0,
        weight=1,
        input_price="1",
        timeout=timeout,
    )
    make_route(
        acme,
        model,
        upstream.v1,
        upstream_model="mock-2",
        name=f"{model}-H",
        priority=1,
        weight=0,
        input_price="2",
    )
    if policy:
        ModelPolicy.objects.create(model=model, tenant=acme, **policy)


def statuses(row):
    return [(a["provider"].rsplit("-", 1)[1], a["status"]) for a in row.attempts]


def sent_to(upstream, name):
    return [r for r in upstream.requests() if r["body"]["model"].startswith(name)]


def chat(proxy_server, key, model, **kwargs):
    return client(proxy_server, key).chat.completions.create(model=model, messages=HELLO, **kwargs)


def stream_pieces(proxy_server, key, model):
    pieces = []
    for chunk in chat(proxy_server, key, model, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    return pieces


# --- every fault under every strategy ------------------------------------------------------------

FAULTS = {
    "500": ("fail_status=500", 500),
    "503": ("fail_status=503", 503),
    "429 with Retry-After": ("fail_status=429&retry_after=1", 429),
    "slow answer": ("latency_ms=3000", 504),
    "hang": ("hang=1", 504),
    "connection reset": ("reset=1", 0),
}


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("fault", FAULTS)
def test_a_faulty_route_is_retried_then_the_healthy_one_answers(
    proxy_server, acme, upstream, unique_model, key, strategy, fault
):
    options, status = FAULTS[fault]
    faulty_and_healthy(acme, upstream, unique_model, options, strategy=strategy, max_attempts=2)

    answer = chat(proxy_server, key, unique_model)

    assert answer.model == unique_model
    assert answer.choices[0].message.content == "Mock answer to: Hello"
    [row] = wait_for_logs(1, model=unique_model)
    assert (row.status, row.provider) == (200, f"{unique_model}-H")
    assert statuses(row) == [("F", status), ("F", status), ("H", 200)]
    assert [a["try"] for a in row.attempts] == [1, 2, 1]
    first, retry, _ = row.attempts
    assert first["backoff_ms"] == 0 and retry["backoff_ms"] > 0
    assert first["error"] and retry["error"]
    if fault == "429 with Retry-After":
        assert retry["backoff_ms"] >= 1000
    if status == 504:
        assert "timed out after 0.5s" in first["error"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_stream_that_breaks_before_its_first_chunk_falls_back_unseen(
    proxy_server, acme, upstream, unique_model, key, strategy
):
    faulty_and_healthy(acme, upstream, unique_model, "fail_after_chunks=0", strategy=strategy, max_attempts=2)

    assert "".join(stream_pieces(proxy_server, key, unique_model)) == "Mock answer to: Hello"
    [row] = wait_for_logs(1, model=unique_model)
    # The upstream sent its headers, then dropped the connection: no status of its own.
    assert statuses(row) == [("F", 0), ("F", 0), ("H", 200)]
    assert "connection" in row.attempts[0]["error"]
    assert row.status == 200 and row.error_type == ""


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_stream_that_breaks_after_a_chunk_reached_the_client_ends_with_an_error(
    proxy_server, acme, upstream, unique_model, key, strategy
):
    faulty_and_healthy(
        acme, upstream, unique_model, "fail_after_chunks=2&chunks=5", strategy=strategy, max_attempts=2
    )

    received = []
    with pytest.raises(openai.APIError, match="upstream"):
        for chunk in chat(proxy_server, key, unique_model, stream=True):
            received.append(chunk)
    assert len(received) == 2
    [row] = wait_for_logs(1, model=unique_model)
    assert statuses(row) == [("F", 200)]  # no second route: the client has part of an answer
    assert row.error_type == "upstream_stream_error"
    assert sent_to(upstream, "mock-2") == []


# --- retries ---------------------------------------------------------------------------------------


def test_a_route_that_recovers_answers_after_retries_with_growing_backoff(
    proxy_server, acme, upstream, unique_model, key
):
    faulty_and_healthy(acme, upstream, unique_model, "fail_status=503&fail_first=2", max_attempts=3)

    chat(proxy_server, key, unique_model)

    [row] = wait_for_logs(1, model=unique_model)
    assert statuses(row) == [("F", 503), ("F", 503), ("F", 200)]
    assert 0 < row.attempts[1]["backoff_ms"] < row.attempts[2]["backoff_ms"]
    assert sent_to(upstream, "mock-2") == []


def test_without_a_policy_each_route_is_tried_once(proxy_server, acme, upstream, unique_model, key):
    faulty_and_healthy(acme, upstream, unique_model, "fail_status=503&fail_first=1")

    chat(proxy_server, key, unique_model)

    [row] = wait_for_logs(1, model=unique_model)
    assert statuses(row) == [("F", 503), ("H", 200)]


def test_a_retry_after_beyond_the_cap_moves_to_the_next_route_at_once(
    proxy_server, acme, upstream, unique_model, key
):
    faulty_and_healthy(acme, upstream, unique_model, "fail_status=429&retry_after=120", max_attempts=3)

    started = time.monotonic()
    chat(proxy_server, key, unique_model)

    assert time.monotonic() - started < 2
    [row] = wait_for_logs(1, model=unique_model)
    assert statuses(row) == [("F", 429), ("H", 200)]


@pytest.mark.parametrize("status", [400, 404, 422])
def test_a_client_error_comes_back_at_once_without_retry_or_fallback(
    proxy_server, acme, upstream, unique_model, key, status
):
    faulty_and_healthy(acme, upstream, unique_model, f"fail_status={status}", max_attempts=3)

    with pytest.raises(openai.APIStatusError) as failure:
        chat(proxy_server, key, unique_model)

    assert failure.value.status_code == status
    [row] = wait_for_logs(1, model=unique_model)
    assert statuses(row) == [("F", status)]
    assert len(upstream.requests()) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_credential_moves_to_the_next_route_without_a_retry(
    proxy_server, acme, upstream, unique_model, key, status
):
    faulty_and_healthy(acme, upstream, unique_model, f"fail_status={status}", max_attempts=3)

    chat(proxy_server, key, unique_model)

    [row] = wait_for_logs(1, model=unique_model)
    assert statuses(row) == [("F", status), ("H", 200)]


def test_when_every_try_fails_the_client_gets_the_last_failure(
    proxy_server, acme, upstream, unique_model, key
):
    make_route(
        acme,
        unique_model,
        upstream.v1,
        upstream_model="mock-1?fail_status=500",
        name=f"{unique_model}-F",
        priority=0,
    )
    make_route(
        acme,
        unique_model,
        upstream.v1,
        upstream_model="mock-2?fail_status=503",
        name=f"{unique_model}-G",
        priority=1,
    )
    ModelPolicy.objects.create(model=unique_model, tenant=acme, max_attempts=2)

    with pytest.raises(openai.InternalServerError) as failure:
        chat(proxy_server, key, unique_model)

    assert failure.value.status_code == 503
    [row] = wait_for_logs(1, model=unique_model)
    assert statuses(row) == [("F", 500), ("F", 500), ("G", 503), ("G", 503)]


# --- deadline and timeouts -----------------------------------------------------------------------


def test_the_policy_deadline_bounds_the_whole_request(proxy_server, acme, upstream, unique_model, key):
    faulty_and_healthy(
        acme, upstream, unique_model, "hang=1", timeout=30, max_attempts=3, deadline_seconds=1.0
    )

    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as failure:
        chat(proxy_server, key, unique_model)

    assert failure.value.status_code == 504
    assert 0.9 < time.monotonic() - started < 3
    [row] = wait_for_logs(1, model=unique_model)
    assert statuses(row) == [("F", 504)]
    assert "deadline" in row.attempts[0]["error"]
    assert sent_to(upstream, "mock-2") == []


def test_a_backoff_longer_than_what_is_left_of_the_deadline_moves_on(
    proxy_server, acme, upstream, unique_model, key
):
    faulty_and_healthy(
        acme, upstream, unique_model, "fail_status=429&retry_after=5", max_attempts=3, deadline_seconds=3.0
    )

    started = time.monotonic()
    chat(proxy_server, key, unique_model)

    assert time.monotonic() - started < 2
    [row] = wait_for_logs(1, model=unique_model)
    assert statuses(row) == [("F", 429), ("H", 200)]


def test_a_stream_without_its_first_byte_in_time_falls_back(proxy_server, acme, upstream, unique_model, key):
    faulty_and_healthy(acme, upstream, unique_model, "latency_ms=2000", timeout=30)
    Provider.objects.filter(name=f"{unique_model}-F").update(first_byte_timeout_seconds=0.3)

    started = time.monotonic()
    assert "".join(stream_pieces(proxy_server, key, unique_model)) == "Mock answer to: Hello"

    assert time.monotonic() - started < 1.5
    [row] = wait_for_logs(1, model=unique_model)
    assert statuses(row) == [("F", 504), ("H", 200)]
    assert "no first byte within 0.3s" in row.attempts[0]["error"]


def test_the_first_byte_timeout_leaves_a_slow_stream_alone_once_it_started(
    proxy_server, acme, upstream, unique_model, key
):
    faulty_and_healthy(acme, upstream, unique_model, "latency_ms=100&chunks=3&chunk_delay_ms=400", timeout=30)
    Provider.objects.filter(name=f"{unique_model}-F").update(first_byte_timeout_seconds=0.3)

    assert "".join(stream_pieces(proxy_server, key, unique_model)) == "Mock answer to: Hello"
    [row] = wait_for_logs(1, model=unique_model)
    assert statuses(row) == [("F", 200)]


# --- fallback models -----------------------------------------------------------------------------


def test_when_every_route_fails_the_fallback_model_answers(proxy_server, acme, upstream, unique_model, key):
    backup = f"{unique_model}-backup"
    make_route(
        acme, unique_model, upstream.v1, upstream_model="mock-1?fail_status=503", name=f"{unique_model}-F"
    )
    make_route(acme, backup, upstream.v1, upstream_model="mock-2", name=f"{unique_model}-B")
    ModelPolicy.objects.create(model=unique_model, tenant=acme, fallback_models=["no-such-model", backup])

    answer = chat(proxy_server, key, unique_model)

    assert answer.model == unique_model
    [row] = wait_for_logs(1, model=unique_model)
    assert row.provider == f"{unique_model}-B"
    assert statuses(row) == [("F", 503), ("B", 200)]
    assert [a["model"] for a in row.attempts] == [unique_model, backup]


def test_a_shared_policy_names_fallbacks_for_every_tenant_and_a_tenant_policy_replaces_it(
    proxy_server, acme, globex, upstream, unique_model, key
):
    backup = f"{unique_model}-backup"
    for tenant in (acme, globex):
        make_route(
            tenant,
            unique_model,
            upstream.v1,
            upstream_model="mock-1?fail_status=503",
            name=f"{unique_model}-F",
        )
        make_route(tenant, backup, upstream.v1, upstream_model="mock-2", name=f"{unique_model}-B")
    ModelPolicy.objects.create(model=unique_model, fallback_models=[backup])
    ModelPolicy.objects.create(model=unique_model, tenant=globex, fallback_models=[])

    chat(proxy_server, key, unique_model)
    with pytest.raises(openai.InternalServerError):
        chat(proxy_server, make_key(globex)[1], unique_model)

    acme_row, globex_row = sorted(wait_for_logs(2, model=unique_model), key=lambda r: r.tenant_id != acme.id)
    assert statuses(acme_row) == [("F", 503), ("B", 200)]
    assert statuses(globex_row) == [("F", 503)]


def test_a_fallback_model_is_looked_up_among_the_tenants_own_routes_only(
    proxy_server, acme, globex, upstream, unique_model, key
):
    backup = f"{unique_model}-backup"
    make_route(
        acme, unique_model, upstream.v1, upstream_model="mock-1?fail_status=503", name=f"{unique_model}-F"
    )
    make_route(globex, backup, upstream.v1, upstream_model="mock-2", name=f"{unique_model}-B")
    ModelPolicy.objects.create(model=unique_model, tenant=acme, fallback_models=[backup])

    with pytest.raises(openai.InternalServerError) as failure:
        chat(proxy_server, key, unique_model)

    assert failure.value.status_code == 503
    [row] = wait_for_logs(1, model=unique_model)
    assert statuses(row) == [("F", 503)]
    assert sent_to(upstream, "mock-2") == []


# --- circuit breaker (one process; tests/test_breaker_processes.py has two) ----------------------


def test_a_route_failing_again_and_again_is_skipped_by_its_breaker(
    proxy_server, acme, upstream, unique_model, key, settings
):
    faulty_and_healthy(acme, upstream, unique_model, "fail_status=500")
    for _ in range(settings.LLMPROXY_BREAKER_FAILURES):
        chat(proxy_server, key, unique_model)
    failures_seen = len(sent_to(upstream, "mock-1"))

    answer = chat(proxy_server, key, unique_model)

    assert answer.choices[0].message.content == "Mock answer to: Hello"
    assert len(sent_to(upstream, "mock-1")) == failures_seen
    rows = wait_for_logs(settings.LLMPROXY_BREAKER_FAILURES + 1, model=unique_model)
    last = rows[-1].attempts
    assert [(a["breaker"], a["status"]) for a in last] == [("open", 0), ("closed", 200)]
    assert "circuit breaker" in last[0]["error"]


def test_a_plain_http_client_gets_the_503_of_a_model_whose_routes_are_all_paused(
    proxy_server, acme, upstream, unique_model, key, settings
):
    make_route(acme, unique_model, upstream.v1, upstream_model="mock-1?fail_status=500")
    for _ in range(settings.LLMPROXY_BREAKER_FAILURES):
        with pytest.raises(openai.InternalServerError):
            chat(proxy_server, key, unique_model)

    response = httpx.post(
        f"{proxy_server.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": unique_model, "messages": HELLO},
    )

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "circuit_open"
