"""The SDK's typed errors come out right, in OpenAI's error shape, with the status a client expects."""

from datetime import timedelta

import httpx
import openai
import pytest
from django.utils import timezone

from keys.services import api_key_revoke, api_key_rotate
from tests.gateway_helpers import client, make_key, make_route, wait_for_logs

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture
def route(acme, upstream, unique_model):
    make_route(acme, unique_model, upstream.v1)
    return unique_model


def post(proxy_server, key, body, **headers):
    if key:
        headers["authorization"] = f"Bearer {key}"
    return httpx.post(
        f"{proxy_server.base_url}/v1/chat/completions",
        headers=headers,
        content=body if isinstance(body, bytes) else None,
        json=None if isinstance(body, bytes) else body,
    )


def assert_openai_error(response, status, code=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code:
        assert error["code"] == code
    return error


def test_a_missing_key_is_an_authentication_error(proxy_server, route):
    with pytest.raises(openai.AuthenticationError):
        client(proxy_server, "").chat.completions.create(model=route, messages=HELLO)
    assert_openai_error(post(proxy_server, None, {"model": route, "messages": HELLO}), 401)


def test_a_wrong_key_is_an_authentication_error(proxy_server, route, acme):
    api_key, plain = make_key(acme)
    wrong = plain[:-4] + ("AAAA" if not plain.endswith("AAAA") else "BBBB")
    with pytest.raises(openai.AuthenticationError):
        client(proxy_server, wrong).chat.completions.create(model=route, messages=HELLO)
    with pytest.raises(openai.AuthenticationError):
        client(proxy_server, "sk-not-even-our-shape").chat.completions.create(model=route, messages=HELLO)


def test_a_revoked_key_is_refused_within_five_seconds(proxy_server, route, acme):
    api_key, plain = make_key(acme)
    api = client(proxy_server, plain)
    api.chat.completions.create(model=route, messages=HELLO)
    api_key_revoke(api_key=api_key)
    deadline = timezone.now() + timedelta(seconds=5)
    while timezone.now() < deadline:
        try:
            api.chat.completions.create(model=route, messages=HELLO)
        except openai.AuthenticationError as exc:
            assert "revoked" in exc.message
            return
    pytest.fail("the revoked key still worked after 5 seconds")


def test_an_expired_key_is_refused_at_its_expiry_time(proxy_server, route, acme):
    api_key, plain = make_key(acme, expires_in=2)
    api = client(proxy_server, plain)
    api.chat.completions.create(model=route, messages=HELLO)
    wait = (api_key.expires_at - timezone.now()).total_seconds()
    if wait > 0:
        import time

        time.sleep(wait + 0.05)
    with pytest.raises(openai.AuthenticationError, match="expired"):
        api.chat.completions.create(model=route, messages=HELLO)


def test_an_inactive_tenant_is_refused(proxy_server, route, acme):
    api_key, plain = make_key(acme)
    acme.is_active = False
    acme.save()
    with pytest.raises(openai.AuthenticationError, match="inactive"):
        client(proxy_server, plain).chat.completions.create(model=route, messages=HELLO)


def test_a_rotated_secret_works_at_once_and_the_old_one_during_the_grace(proxy_server, route, acme):
    api_key, old = make_key(acme)
    client(proxy_server, old).chat.completions.create(model=route, messages=HELLO)
    new = api_key_rotate(api_key=api_key, grace=timedelta(minutes=5))
    assert new.startswith(api_key.prefix + "-")
    client(proxy_server, new).chat.completions.create(model=route, messages=HELLO)
    client(proxy_server, old).chat.completions.create(model=route, messages=HELLO)


def test_a_model_the_key_may_not_use_is_a_permission_error(proxy_server, route, acme):
    _, plain = make_key(acme, allowed_models=["something-else"])
    with pytest.raises(openai.PermissionDeniedError) as failure:
        client(proxy_server, plain).chat.completions.create(model=route, messages=HELLO)
    assert failure.value.code == "model_not_allowed"


def test_an_unknown_model_is_not_found(proxy_server, route, acme):
    _, plain = make_key(acme)
    with pytest.raises(openai.NotFoundError) as failure:
        client(proxy_server, plain).chat.completions.create(model="no-such-model", messages=HELLO)
    assert failure.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"\xff\xfe\x00garbage", None),
        (b"[1, 2]", None),
        ({"messages": HELLO}, "model"),
        ({"model": 42, "messages": HELLO}, "model"),
        ({"model": "MODEL", "messages": "hi"}, "messages"),
        ({"model": "MODEL", "messages": [{"content": "no role"}]}, "messages[0].role"),
        ({"model": "MODEL", "messages": HELLO, "max_tokens": "ten"}, "max_tokens"),
        ({"model": "MODEL", "messages": HELLO, "stream": "yes"}, "stream"),
        ({"model": "MODEL", "messages": HELLO, "temperature": "hot"}, "temperature"),
    ],
)
def test_malformed_bodies_are_bad_requests(proxy_server, route, acme, body, param):
    _, plain = make_key(acme)
    if isinstance(body, dict) and body.get("model") == "MODEL":
        body = {**body, "model": route}
    error = assert_openai_error(post(proxy_server, plain, body), 400)
    assert error["type"] == "invalid_request_error"
    if param:
        assert error["param"] == param


def test_the_sdk_raises_bad_request_for_wrong_types(proxy_server, route, acme):
    _, plain = make_key(acme)
    with pytest.raises(openai.BadRequestError):
        client(proxy_server, plain).chat.completions.create(
            model=route, messages=HELLO, extra_body={"n": "two"}
        )


def test_a_body_over_the_size_limit_is_413_before_anything_else(proxy_server, route):
    big = b'{"model": "x", "messages": [{"role": "user", "content": "' + b"a" * (17 * 1024 * 1024) + b'"}]}'
    # No key at all: 413 still wins over 401.
    assert_openai_error(post(proxy_server, None, big), 413, "request_too_large")


def test_a_401_wins_over_a_400(proxy_server, route):
    assert_openai_error(post(proxy_server, "lp-AAAAAAAA-" + "x" * 40, b"{broken"), 401)


@pytest.mark.parametrize(
    ("upstream_model", "status", "sdk_error"),
    [
        ("mock-1?fail_status=500", 502, openai.InternalServerError),
        ("mock-1?fail_status=503", 503, openai.InternalServerError),
        ("mock-1?fail_status=429", 503, openai.InternalServerError),
    ],
)
def test_upstream_failures_are_5xx_in_openai_shape(
    proxy_server, acme, upstream, unique_model, upstream_model, status, sdk_error
):
    make_route(acme, unique_model, upstream.v1, upstream_model=upstream_model)
    _, plain = make_key(acme)
    with pytest.raises(sdk_error) as failure:
        client(proxy_server, plain).chat.completions.create(model=unique_model, messages=HELLO)
    assert failure.value.status_code == status
    [row] = wait_for_logs(1, model=unique_model)
    assert row.status == status
    assert row.attempts[0]["status"] == int(upstream_model.rsplit("=", 1)[1])


def test_an_upstream_timeout_is_504(proxy_server, acme, upstream, unique_model):
    make_route(acme, unique_model, upstream.v1, upstream_model="mock-1?latency_ms=3000", timeout=0.5)
    _, plain = make_key(acme)
    with pytest.raises(openai.APIStatusError) as failure:
        client(proxy_server, plain).chat.completions.create(model=unique_model, messages=HELLO)
    assert failure.value.status_code == 504


def test_an_unreachable_upstream_is_502(proxy_server, acme, unique_model):
    make_route(acme, unique_model, "http://127.0.0.1:9/v1")
    _, plain = make_key(acme)
    with pytest.raises(openai.InternalServerError) as failure:
        client(proxy_server, plain).chat.completions.create(model=unique_model, messages=HELLO)
    assert failure.value.status_code == 502


def test_a_client_error_from_the_upstream_comes_back_at_once(proxy_server, acme, upstream, unique_model):
    make_route(acme, unique_model, upstream.v1, upstream_model="mock-1?fail_status=400", priority=0)
    make_route(acme, unique_model, upstream.v1, upstream_model="mock-2", priority=1, name="second")
    _, plain = make_key(acme)
    with pytest.raises(openai.BadRequestError):
        client(proxy_server, plain).chat.completions.create(model=unique_model, messages=HELLO)
    assert [r["body"]["model"] for r in upstream.requests()] == ["mock-1?fail_status=400"]


def test_a_failing_route_falls_back_to_the_next_priority(proxy_server, acme, upstream, unique_model):
    make_route(acme, unique_model, upstream.v1, upstream_model="mock-1?fail_status=503", priority=0)
    make_route(acme, unique_model, upstream.v1, upstream_model="mock-2", priority=1, name="second")
    _, plain = make_key(acme)
    answer = client(proxy_server, plain).chat.completions.create(model=unique_model, messages=HELLO)
    assert answer.model == unique_model
    [row] = wait_for_logs(1, model=unique_model)
    assert [a["status"] for a in row.attempts] == [503, 200]
    assert row.provider == "second"


def test_unknown_paths_and_methods_answer_in_openai_shape(proxy_server):
    assert_openai_error(httpx.post(f"{proxy_server.base_url}/v1/nothing-here"), 404)
    assert_openai_error(httpx.get(f"{proxy_server.base_url}/v1/chat/completions"), 405)
