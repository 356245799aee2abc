"""Properties of the parsers on the request path: whatever comes in, they answer or refuse cleanly."""

from datetime import timedelta
from types import SimpleNamespace

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from llmproxy.durations import parse_duration
from llmproxy.gateway.errors import GatewayError
from llmproxy.gateway.proxy import key_from_headers
from llmproxy.gateway.response_cache import _DEFAULTS, _DELIVERY_ONLY, cache_key, request_directive
from llmproxy.gateway.validation import VALIDATORS, decode_json

UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
FIELDS = [
    "model",
    "messages",
    "prompt",
    "input",
    "stream",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "temperature",
    "stream_options",
    "tools",
    "stop",
    "role",
    "content",
]
request_like = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=8)
key_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=80)
header_bytes = st.binary(max_size=200)


@given(st.integers(0, 999_999_999), st.sampled_from(sorted(UNITS)), st.sampled_from(["", " ", "  "]))
def test_a_number_and_a_unit_is_that_duration_or_too_long(amount, unit, pad):
    text = f"{pad}{amount}{pad}{unit}{pad}"
    try:
        expected = timedelta(**{UNITS[unit]: amount})
    except OverflowError:
        with pytest.raises(ValueError):
            parse_duration(text)
        return
    assert parse_duration(text) == expected


@given(st.text(max_size=30) | json_values)
def test_anything_else_is_a_value_error_and_nothing_worse(value):
    try:
        result = parse_duration(value)
    except ValueError:
        return
    assert isinstance(result, timedelta) and result >= timedelta(0)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(st.sampled_from(sorted(VALIDATORS)), request_like)
def test_request_validation_refuses_only_with_a_gateway_error(endpoint, payload):
    try:
        VALIDATORS[endpoint](decode_json(orjson.dumps(payload)))
    except GatewayError as exc:
        assert exc.status == 400 and exc.message
        return
    assert isinstance(payload["model"], str) and payload["model"].strip()


@given(st.binary(max_size=300))
def test_any_bytes_decode_to_an_object_or_a_400(body):
    try:
        assert isinstance(decode_json(body), dict)
    except GatewayError as exc:
        assert exc.status == 400


TENANT = SimpleNamespace(id=7, cache_generation=3)


@given(
    st.dictionaries(st.text(max_size=8), json_values, max_size=6),
    st.text(min_size=1, max_size=20),
    st.randoms(use_true_random=False),
)
def test_the_cache_key_ignores_field_order_delivery_fields_and_spelled_out_defaults(body, model, rng):
    shuffled = dict(rng.sample(list(body.items()), len(body)))
    shuffled.update({"stream": True, "user": "someone", "stream_options": {"include_usage": True}})
    for name, default in rng.sample(sorted(_DEFAULTS.items()), 3):
        if name not in body:
            shuffled[name] = default
    plain = {k: v for k, v in body.items() if k not in _DELIVERY_ONLY}
    assert cache_key(TENANT, "chat", model, plain) == cache_key(TENANT, "chat", model, shuffled)


@given(
    st.dictionaries(st.text(max_size=8), json_values, max_size=6),
    st.text(min_size=1, max_size=20),
    st.text(min_size=1, max_size=20),
)
def test_the_cache_key_tells_models_endpoints_and_tenants_apart(body, model, other):
    assume(model != other)
    key = cache_key(TENANT, "chat", model, body)
    assert key != cache_key(TENANT, "chat", other, body)
    assert key != cache_key(TENANT, "embeddings", model, body)
    assert key != cache_key(SimpleNamespace(id=8, cache_generation=3), "chat", model, body)
    assert key != cache_key(SimpleNamespace(id=7, cache_generation=4), "chat", model, body)


@given(key_text, st.sampled_from(["Bearer", "bearer", "BEARER"]), st.sampled_from(["", " ", "  "]))
def test_a_bearer_key_is_read_whatever_the_scheme_case_and_padding(key, scheme, pad):
    assert key_from_headers({"authorization": f"{scheme} {pad}{key}{pad}".encode()}) == key


@given(key_text, st.sampled_from(["api-key", "x-api-key"]))
def test_a_key_in_an_api_key_header_is_read(key, name):
    assert key_from_headers({name: f" {key} ".encode()}) == key


@given(st.dictionaries(st.sampled_from(["authorization", "api-key", "x-api-key", "other"]), header_bytes))
def test_any_header_bytes_give_a_key_or_none_and_never_raise(headers):
    key = key_from_headers(headers)
    assert key is None or (isinstance(key, str) and key == key.strip() and key)


@given(st.dictionaries(st.sampled_from(["x-llmproxy-cache", "cache-control"]), header_bytes))
def test_any_cache_directive_bytes_give_a_known_directive(headers):
    assert request_directive(headers) in ("", "no-cache", "no-store")
