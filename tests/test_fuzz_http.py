"""Garbage at a live proxy: every answer to /v1/* and /api/v1/* is a clean 4xx in that surface's error shape.

A fixed seed picks 300 requests: random bytes, truncated and oversized JSON,
100 000 nested arrays, wrongly typed fields, invalid UTF-8, and headers with
invalid bytes or of 12 KiB. None may be answered with a 5xx or a dropped
connection, and the server answers a good request afterwards.

Two answers come from Twisted (Daphne's HTTP layer) before the proxy sees the
request, and are checked apart: a header line past 16 KiB drops the
connection without an answer, and a multipart/form-data body that does not
parse gets a bare 400. The server goes on serving after both.
"""

import json
import random

import httpx
import pytest
from django.conf import settings

from llmproxy.api.tokens import access_token_issue
from tests.gateway_helpers import make_key, make_route

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SEED = 20261128
REQUESTS = 300
V1_POSTS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages"]
API_POSTS = [
    "/api/v1/tenants/",
    "/api/v1/users/",
    "/api/v1/keys/",
    "/api/v1/providers/",
    "/api/v1/model-routes/",
    "/api/v1/quotas/",
    "/api/v1/auth/token",
]
API_GETS = [
    "/api/v1/request-logs/",
    "/api/v1/audit-logs/",
    "/api/v1/usage/",
    "/api/v1/keys/",
    "/api/v1/tenants/",
]
NESTED = b"[" * 100_000 + b"]" * 100_000
JUNK_VALUES = [
    None,
    True,
    -1,
    0,
    1e308,
    10**40,
    "",
    "x" * 10_000,
    [],
    {},
    [[[]]],
    {"a": {"b": None}},
    "\u0000",
    "\ud7ff\ue000",
    -0.0,
    "NaN",
    [1, "a", None],
]
FIELDS = [
    "model",
    "messages",
    "input",
    "prompt",
    "stream",
    "max_tokens",
    "temperature",
    "n",
    "stop",
    "tools",
    "stream_options",
    "user",
    "name",
    "slug",
    "tenant",
    "role",
    "metric",
    "period",
    "limit",
    "kind",
    "base_url",
    "models",
    "expires_at",
    "priority",
    "weight",
    "username",
    "password",
]


def junk_body(rng: random.Random, model: str, *, nested=True) -> bytes:
    kind = rng.randrange(9)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 2000))
    if kind == 1:
        whole = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
        return whole[: rng.randrange(len(whole))]
    if kind == 2:
        return NESTED if nested else b"[" * 100
    if kind == 3:
        return b'{"model": "' + model.encode() + b'", "messages": [{"role": "user", "content": "\xff\xc3("}]}'
    if kind == 4:
        return json.dumps(rng.choice(JUNK_VALUES)).encode()
    if kind == 5:
        return b'{"model": NaN, "max_tokens": Infinity, "temperature": 1e999}'
    if kind == 6:  # right shape, wrong types
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "input": "x", "prompt": "x"}
        for name in rng.sample(FIELDS, rng.randrange(1, 5)):
            body[name] = rng.choice(JUNK_VALUES)
        return json.dumps(body).encode()
    if kind == 7:
        return b'{"model": "' + model.encode() + b'", "messages": [' + b'{"role": "user"},' * 5000 + b"1]}"
    return b""


def junk_headers(rng: random.Random, auth: dict) -> list:
    headers = [(k.encode(), v.encode()) for k, v in auth.items()]
    kind = rng.randrange(6)
    if kind == 0:
        headers.append((b"x-request-id", bytes(rng.randrange(0x80, 0x100) for _ in range(40))))
    elif kind == 1:
        headers.append((b"x-junk", b"a" * 12 * 1024))
    elif kind == 2:
        headers.append(
            (
                b"content-type",
                rng.choice(
                    [
                        b"text/plain",
                        b"application/json; charset=latin-1",
                        b"application/x-www-form-urlencoded",
                        b"\xff\xfe",
                    ]
                ),
            )
        )
    elif kind == 3:
        headers.append((b"cache-control", b"no-cache, \xc3\x28"))
    elif kind == 4:
        headers.append((b"anthropic-version", b"\xff"))
    return headers


def is_openai_error(body) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    return (
        isinstance(error, dict)
        and {"message", "type", "param", "code"} <= error.keys()
        and isinstance(error["message"], str)
        and error["message"]
    )


def is_anthropic_error(body) -> bool:
    return (
        isinstance(body, dict)
        and body.get("type") == "error"
        and isinstance(body.get("error"), dict)
        and {"type", "message"} <= body["error"].keys()
    )


def is_api_error(body) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    return (
        isinstance(error, dict)
        and {"message", "type", "code"} <= error.keys()
        and isinstance(error["message"], str)
    )


def check(path, response):
    """What is wrong with the answer to a bad request to ``path``, or None."""
    where = f"{response.request.method} {path} -> {response.status_code}: {response.text[:300]!r}"
    if response.request.method == "GET" and response.status_code == 200:
        return None  # a list may ignore a query parameter it cannot use
    if not 400 <= response.status_code < 500:
        return where
    if response.status_code == 413 and not path.startswith("/api/"):
        return None  # the body is refused before it is read; shape checked in the gateway's own tests
    try:
        body = response.json()
    except ValueError:
        return where
    shape = (
        is_anthropic_error
        if path == "/v1/messages"
        else is_openai_error
        if path.startswith("/v1/")
        else is_api_error
    )
    return None if shape(body) else where


def test_random_bad_requests_get_clean_client_errors_and_the_server_keeps_serving(
    proxy_server, acme, platform_admin, upstream, unique_model
):
    make_route(acme, unique_model, upstream.v1)
    _, plain = make_key(acme)
    _, token = access_token_issue(user=platform_admin, name="fuzz")
    v1_auth = {"authorization": f"Bearer {plain}"}
    api_auth = {"authorization": f"Token {token}", "content-type": "application/json"}
    unrouted = f"{unique_model}-nowhere"  # a valid request would stop at 404 instead of reaching the upstream
    rng = random.Random(SEED)
    base = proxy_server.base_url
    wrong = []
    with httpx.Client(base_url=base, timeout=30) as http:
        for i in range(REQUESTS):
            on_api = i % 3 == 2
            if on_api and rng.random() < 0.3:
                path = rng.choice(API_GETS)
                query = rng.choice(
                    [
                        "?page=abc",
                        "?page=-1",
                        "?since=yesterday&until=%ff",
                        "?tenant=%00",
                        "?limit=" + "9" * 50,
                        "?model=" + "x" * 5000,
                    ]
                )
                response = http.request("GET", path + query, headers=junk_headers(rng, api_auth))
            else:
                path = rng.choice(API_POSTS if on_api else V1_POSTS)
                # Deeply nested JSON at the API has its own test below.
                response = http.request(
                    "POST",
                    path,
                    content=junk_body(rng, unrouted, nested=not on_api),
                    headers=junk_headers(rng, api_auth if on_api else v1_auth),
                )
            wrong.append(check(path, response))

        too_big = b'{"model": "x", "input": "' + b"a" * settings.LLMPROXY_MAX_BODY_BYTES + b'"}'
        assert http.post("/v1/embeddings", content=too_big, headers=v1_auth).status_code == 413

        served = http.post(
            "/v1/chat/completions",
            headers=v1_auth,
            json={"model": unique_model, "messages": [{"role": "user", "content": "up?"}]},
        )
        with pytest.raises(httpx.RemoteProtocolError):
            http.post("/v1/chat/completions", headers={**v1_auth, "x-junk": "a" * 64 * 1024}, content=b"{}")
        multipart = {**v1_auth, "content-type": "multipart/form-data; boundary=x"}
        assert http.post("/v1/chat/completions", headers=multipart, content=b"{}").status_code == 400
        served_after_huge_header = http.get("/v1/models", headers=v1_auth)
    assert [w for w in wrong if w] == []
    assert served_after_huge_header.status_code == 200
    assert served.status_code == 200
    assert served.json()["choices"][0]["message"]["content"]


def test_the_api_answers_deeply_nested_json_with_a_client_error(proxy_server, platform_admin):
    _, token = access_token_issue(user=platform_admin, name="fuzz")
    headers = {"authorization": f"Token {token}", "content-type": "application/json"}
    answers = {
        path: httpx.post(f"{proxy_server.base_url}{path}", content=NESTED, headers=headers, timeout=30)
        for path in API_POSTS
        if path != "/api/v1/auth/token"
    }
    assert {path: r.status_code for path, r in answers.items()} == dict.fromkeys(answers, 400)
    assert all(is_api_error(r.json()) for r in answers.values())
