"""A tenant's limits on the request itself: input length, max_tokens, allowed parameters."""

import httpx
import pytest

from tests.gateway_helpers import make_key, make_route

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def post(proxy_server, key, body):
    return httpx.post(
        f"{proxy_server.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json=body,
        timeout=30,
    )


def test_max_tokens_above_the_tenants_limit_is_refused_and_absent_gets_the_limit(
    proxy_server, acme, upstream, unique_model
):
    acme.max_output_tokens = 100
    acme.save()
    make_route(acme, unique_model, upstream.v1)
    _, key = make_key(acme)
    hello = [{"role": "user", "content": "hi"}]
    refused = post(proxy_server, key, {"model": unique_model, "messages": hello, "max_tokens": 500})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "max_tokens_too_large"
    assert refused.json()["error"]["param"] == "max_tokens"
    assert (
        post(proxy_server, key, {"model": unique_model, "messages": hello, "max_tokens": 50}).status_code
        == 200
    )
    assert post(proxy_server, key, {"model": unique_model, "messages": hello}).status_code == 200
    assert [r["body"].get("max_tokens") for r in upstream.requests()] == [50, 100]


def test_an_input_longer_than_allowed_is_refused(proxy_server, acme, upstream, unique_model):
    acme.max_input_tokens = 20
    acme.save()
    make_route(acme, unique_model, upstream.v1)
    _, key = make_key(acme)
    long = post(
        proxy_server, key, {"model": unique_model, "messages": [{"role": "user", "content": "word " * 50}]}
    )
    assert long.status_code == 400
    assert long.json()["error"]["code"] == "input_too_long"
    short = post(proxy_server, key, {"model": unique_model, "messages": [{"role": "user", "content": "hi"}]})
    assert short.status_code == 200
    assert len(upstream.requests()) == 1


def test_only_the_allowed_parameters_pass(proxy_server, acme, globex, upstream, unique_model):
    acme.allowed_parameters = ["temperature", "max_tokens"]
    acme.save()
    make_route(None, unique_model, upstream.v1, shared=True)
    _, key = make_key(acme)
    hello = [{"role": "user", "content": "hi"}]
    ok = post(
        proxy_server, key, {"model": unique_model, "messages": hello, "temperature": 0.1, "stream": False}
    )
    assert ok.status_code == 200
    refused = post(proxy_server, key, {"model": unique_model, "messages": hello, "logit_bias": {"1": 5}})
    assert refused.status_code == 400
    assert refused.json()["error"] == {
        "message": "The parameter 'logit_bias' is not allowed for this tenant.",
        "type": "invalid_request_error",
        "param": "logit_bias",
        "code": "parameter_not_allowed",
    }
    # Another tenant's limits do not apply.
    _, other = make_key(globex)
    assert (
        post(
            proxy_server, other, {"model": unique_model, "messages": hello, "logit_bias": {"1": 5}}
        ).status_code
        == 200
    )
