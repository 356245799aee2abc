"""Guardrails end to end (real Daphne, real upstream): each action on prompts, plain and streamed answers."""

import time
from urllib.parse import urlencode

import anthropic
import httpx
import openai
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from audit.models import AuditLog
from providers.mock_engine import split_chunks
from tenants.models import Guardrail
from tests.anthropic_helpers import anthropic_client, anthropic_route, usage_written
from tests.gateway_helpers import client, make_key, make_route, wait_for_hits, wait_for_logs

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CARD = "4111 1111 1111 1111"
CARD_REPLY = f"Card: {CARD}, ok."  # two chunks of it split the number in the middle


def reply_model(text, chunks=2):
    return "mock-1?" + urlencode({"reply": text, "chunks": chunks})


@pytest.fixture(autouse=True)
def _usage_written(proxy_server, acme):
    # On PostgreSQL a teardown that truncates the tables while the proxy writes usage rows deadlocks.
    with usage_written(proxy_server, acme):
        yield


@pytest.fixture
def key(acme):
    return make_key(acme, name="app")


@pytest.fixture
def route(acme, upstream, unique_model):
    make_route(acme, unique_model, upstream.v1)
    return unique_model


def guardrail(tenant, name, detector, action, direction="both", **fields):
    return Guardrail.objects.create(
        tenant=tenant, name=name, detector=detector, action=action, direction=direction, **fields
    )


def post_chat(proxy_server, plain_key, model, content, **body):
    return httpx.post(
        f"{proxy_server.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {plain_key}"},
        json={"model": model, "messages": [{"role": "user", "content": content}], **body},
    )


def streamed_text(proxy_server, plain_key, model, content="hi"):
    stream = client(proxy_server, plain_key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], stream=True
    )
    return [c.choices[0].delta.content or "" for c in stream if c.choices]


def scrape(proxy_server):
    text = httpx.get(f"{proxy_server.base_url}/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# --- requests --------------------------------------------------------------------------------


def test_a_blocked_prompt_gets_400_guardrail_blocked_in_openais_shape(
    proxy_server, acme, key, route, upstream
):
    guardrail(acme, "no-cards-out", "card", "block", direction="request")

    response = post_chat(proxy_server, key[1], route, f"charge my card {CARD} please")

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "The request was blocked by guardrail 'no-cards-out' (card).",
            "type": "invalid_request_error",
            "param": None,
            "code": "guardrail_blocked",
        }
    }
    assert response.headers["x-request-id"]
    assert upstream.requests() == []
    with pytest.raises(openai.BadRequestError) as refused:
        client(proxy_server, key[1]).chat.completions.create(
            model=route, messages=[{"role": "user", "content": CARD}]
        )
    assert refused.value.code == "guardrail_blocked"
    rows = wait_for_logs(2, model=route)
    assert {(r.status, r.error_type) for r in rows} == {(400, "guardrail_blocked")}


def test_a_masked_prompt_reaches_the_upstream_masked(proxy_server, acme, key, route, upstream):
    guardrail(acme, "mask-emails", "email", "mask", direction="request")

    answer = client(proxy_server, key[1]).chat.completions.create(
        model=route,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "I am ann.lee@corp.example.org, hi"},
        ],
    )

    [received] = upstream.requests()
    assert received["body"]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "I am [REDACTED:EMAIL], hi"},
    ]
    assert answer.choices[0].message.content == "Mock answer to: I am [REDACTED:EMAIL], hi"


def test_a_flagged_prompt_goes_through_unchanged_and_is_counted_audited_and_measured(
    proxy_server, acme, key, route, upstream
):
    flag = guardrail(acme, f"flag-keys-{route}", "secret", "flag", direction="request")
    secret = "sk-proj-abc123DEF456ghi789JKL012"

    response = post_chat(proxy_server, key[1], route, f"my key is {secret}")

    assert response.status_code == 200
    assert upstream.requests()[0]["body"]["messages"][0]["content"] == f"my key is {secret}"
    assert wait_for_hits(flag, 1) == {("flag", False): 1}
    audit = AuditLog.objects.get(action="guardrail.flag", target_id=str(flag.pk))
    assert audit.tenant == acme
    assert audit.metadata["request_ids"] == [response.headers["x-request-id"]]
    assert secret not in str(audit.metadata)
    labels = (("action", "flag"), ("guardrail", flag.name), ("shadow", "false"), ("tenant", "acme"))
    assert scrape(proxy_server)[("llmproxy_guardrail_hits_total", labels)] == 1


# --- plain answers ----------------------------------------------------------------------------


def test_a_plain_answer_is_masked_before_it_is_sent(proxy_server, acme, key, upstream, unique_model):
    make_route(acme, unique_model, upstream.v1, upstream_model=reply_model(CARD_REPLY))
    guardrail(acme, "mask-cards", "card", "mask", direction="response")

    answer = client(proxy_server, key[1]).chat.completions.create(
        model=unique_model, messages=[{"role": "user", "content": "hi"}]
    )

    assert answer.choices[0].message.content == "Card: [REDACTED:CARD], ok."
    assert answer.usage.completion_tokens > 0


def test_a_blocked_plain_answer_is_a_400_and_its_usage_is_still_recorded(
    proxy_server, acme, key, upstream, unique_model
):
    make_route(acme, unique_model, upstream.v1, upstream_model=reply_model(CARD_REPLY))
    guardrail(acme, "no-cards-back", "card", "block", direction="response")

    response = post_chat(proxy_server, key[1], unique_model, "hi")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "guardrail_blocked"
    assert "no-cards-back" in response.json()["error"]["message"]
    assert CARD not in response.text
    [row] = wait_for_logs(1, model=unique_model)
    assert (row.status, row.error_type) == (400, "guardrail_blocked")
    assert row.output_tokens > 0


# --- streamed answers --------------------------------------------------------------------------


def test_a_card_number_split_across_two_sse_chunks_is_masked(proxy_server, acme, key, upstream, unique_model):
    first, second = split_chunks(CARD_REPLY, 2)
    assert (first, second) == ("Card: 4111 1111", " 1111 1111, ok.")  # the upstream splits the number
    make_route(acme, unique_model, upstream.v1, upstream_model=reply_model(CARD_REPLY))
    guardrail(acme, "mask-cards", "card", "mask", direction="response")

    pieces = streamed_text(proxy_server, key[1], unique_model)

    assert "".join(pieces) == "Card: [REDACTED:CARD], ok."
    assert not any(ch.isdigit() for piece in pieces for ch in piece)


def test_a_streamed_answer_is_masked_across_many_small_chunks(
    proxy_server, acme, key, upstream, unique_model
):
    text = "Mail ann.lee@corp.example.org or call +44 20 7946 0958 now."
    make_route(acme, unique_model, upstream.v1, upstream_model=reply_model(text, chunks=len(text)))
    guardrail(acme, "mask-emails", "email", "mask", direction="response")
    guardrail(acme, "mask-phones", "phone", "mask", direction="both")

    pieces = streamed_text(proxy_server, key[1], unique_model)

    assert "".join(pieces) == "Mail [REDACTED:EMAIL] or call [REDACTED:PHONE] now."
    assert max(len(p) for p in pieces) <= len("[REDACTED:EMAIL]") + 2


def test_a_blocked_stream_stops_before_the_match_with_a_final_error_event(
    proxy_server, acme, key, upstream, unique_model
):
    make_route(acme, unique_model, upstream.v1, upstream_model=reply_model(CARD_REPLY))
    guardrail(acme, "no-cards-back", "card", "block", direction="response")

    with httpx.stream(
        "POST",
        f"{proxy_server.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key[1]}"},
        json={"model": unique_model, "messages": [{"role": "user", "content": "hi"}], "stream": True},
    ) as response:
        assert response.status_code == 200
        events = [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]

    assert "[DONE]" not in events
    error = orjson.loads(events[-1])["error"]
    assert (error["code"], error["type"]) == ("guardrail_blocked", "invalid_request_error")
    assert "no-cards-back" in error["message"]
    sent = "".join(
        (orjson.loads(e)["choices"] or [{}])[0].get("delta", {}).get("content") or "" for e in events[:-1]
    )
    assert sent == "Card: " and "4111" not in "".join(events)
    [row] = wait_for_logs(1, model=unique_model)
    assert row.error_type == "guardrail_blocked"

    with pytest.raises(openai.APIError) as stopped:
        streamed_text(proxy_server, key[1], unique_model)
    assert "no-cards-back" in str(stopped.value.message)


def test_completions_streams_are_masked_too(proxy_server, acme, key, upstream, unique_model):
    make_route(acme, unique_model, upstream.v1, upstream_model=reply_model(CARD_REPLY, chunks=3))
    guardrail(acme, "mask-cards", "card", "mask", direction="response")

    stream = client(proxy_server, key[1]).completions.create(model=unique_model, prompt="hi", stream=True)

    assert "".join(c.choices[0].text for c in stream if c.choices) == "Card: [REDACTED:CARD], ok."


# --- shadow mode, scope, isolation --------------------------------------------------------------


def test_shadow_rules_change_nothing_and_count_what_they_would_have_done(
    proxy_server, acme, key, upstream, unique_model
):
    make_route(acme, unique_model, upstream.v1, upstream_model=reply_model(CARD_REPLY))
    would_block = guardrail(acme, "would-block", "email", "block", direction="request", shadow=True)
    would_mask = guardrail(acme, "would-mask", "card", "mask", direction="response", shadow=True)

    plain = post_chat(proxy_server, key[1], unique_model, "from ann@corp.example.org")
    streamed = "".join(streamed_text(proxy_server, key[1], unique_model, "from ann@corp.example.org"))

    assert plain.status_code == 200
    assert plain.json()["choices"][0]["message"]["content"] == CARD_REPLY
    assert streamed == CARD_REPLY
    sent_upstream = [r["body"]["messages"][0]["content"] for r in upstream.requests()]
    assert sent_upstream == ["from ann@corp.example.org"] * 2
    assert wait_for_hits(would_block, 2) == {("block", True): 2}
    assert wait_for_hits(would_mask, 2) == {("mask", True): 2}
    assert AuditLog.objects.filter(action="guardrail.flag", target_id=str(would_block.pk)).exists()


def test_another_tenants_rules_never_apply(proxy_server, acme, globex, key, route, upstream):
    guardrail(globex, "globex-no-cards", "card", "block")
    make_route(globex, route, upstream.v1, name=f"globex-{route}")
    globex_key = make_key(globex, name="theirs")

    assert post_chat(proxy_server, key[1], route, f"card {CARD}").status_code == 200
    refused = post_chat(proxy_server, globex_key[1], route, f"card {CARD}")
    assert refused.status_code == 400
    assert "globex-no-cards" in refused.json()["error"]["message"]
    assert upstream.requests()[0]["body"]["messages"][0]["content"] == f"card {CARD}"
    wait_for_logs(1, tenant=globex)


def test_rules_scoped_to_other_keys_or_models_do_not_apply(proxy_server, acme, key, route):
    other_key, _ = make_key(acme, name="other")
    by_key = guardrail(acme, "other-key-only", "card", "block")
    by_key.api_keys.set([other_key])
    guardrail(acme, "other-model-only", "card", "block", models=["some-other-model"])

    assert post_chat(proxy_server, key[1], route, f"card {CARD}").status_code == 200


def test_a_rule_added_while_the_proxy_runs_applies_within_five_seconds(proxy_server, acme, key, route):
    assert post_chat(proxy_server, key[1], route, f"card {CARD}").status_code == 200
    guardrail(acme, "late-rule", "card", "block")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if post_chat(proxy_server, key[1], route, f"card {CARD}").status_code == 400:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the new guardrail did not apply within 5 seconds")


def test_answers_from_the_response_cache_pass_the_response_rules_too(
    proxy_server, acme, key, upstream, unique_model
):
    acme.cache_ttl_seconds = 60
    acme.save()
    make_route(acme, unique_model, upstream.v1, upstream_model=reply_model(CARD_REPLY))
    guardrail(acme, "mask-cards", "card", "mask", direction="response")

    first = post_chat(proxy_server, key[1], unique_model, "hi")
    second = post_chat(proxy_server, key[1], unique_model, "hi")

    assert [first.headers["x-llmproxy-cache"], second.headers["x-llmproxy-cache"]] == ["miss", "hit"]
    contents = {r.json()["choices"][0]["message"]["content"] for r in (first, second)}
    assert contents == {"Card: [REDACTED:CARD], ok."}
    assert len(upstream.requests()) == 1

    # A rule added later applies to what the cache already holds.
    guardrail(acme, "no-masked-cards", "wordlist", "block", direction="response", words=["redacted:card"])
    deadline = time.monotonic() + 5
    while (blocked := post_chat(proxy_server, key[1], unique_model, "hi")).status_code == 200:
        assert time.monotonic() < deadline, "the new rule did not apply to cached answers within 5 seconds"
        time.sleep(0.2)
    assert (blocked.status_code, blocked.json()["error"]["code"]) == (400, "guardrail_blocked")
    assert blocked.headers["x-llmproxy-cache"] == "hit"
    assert len(upstream.requests()) == 1


# --- /v1/messages (Anthropic's API) ------------------------------------------------------------


def test_a_blocked_anthropic_request_gets_400_in_anthropics_shape(
    proxy_server, acme, key, upstream, unique_model
):
    anthropic_route(acme, unique_model, upstream)
    guardrail(acme, "no-cards-out", "card", "block", direction="request")

    with pytest.raises(anthropic.BadRequestError) as refused:
        anthropic_client(proxy_server, key[1]).messages.create(
            model=unique_model, max_tokens=50, messages=[{"role": "user", "content": f"card {CARD}"}]
        )

    assert refused.value.status_code == 400
    message = "The request was blocked by guardrail 'no-cards-out' (card)."
    assert refused.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": message},
    }
    assert upstream.requests() == []


def test_an_anthropic_request_passed_through_is_masked(proxy_server, acme, key, upstream, unique_model):
    anthropic_route(acme, unique_model, upstream)
    guardrail(acme, "mask-emails", "email", "mask", direction="request")

    anthropic_client(proxy_server, key[1]).messages.create(
        model=unique_model,
        max_tokens=50,
        system="Owner: ann@corp.example.org",
        messages=[{"role": "user", "content": [{"type": "text", "text": "mail bob@corp.example.org"}]}],
    )

    [received] = upstream.requests()
    assert received["path"] == "/v1/messages"
    assert received["body"]["system"] == "Owner: [REDACTED:EMAIL]"
    assert received["body"]["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "mail [REDACTED:EMAIL]"}]}
    ]
