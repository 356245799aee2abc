"""A request's guardrails: prompts blocked, masked or flagged; answers masked; rules by key and model."""

import copy
import random
import timeit

import pytest
from asgiref.sync import async_to_sync

from keys.lookup import authenticate
from keys.services import api_key_create
from llmproxy.guardrails import cache
from llmproxy.guardrails.detectors import BUILT_IN
from llmproxy.guardrails.engine import GuardrailBlocked, RequestGuard, Rule, Selection, TenantRules
from tenants.models import Guardrail


def rule(kind, action="mask", *, rule_id, shadow=False, direction="both", key_ids=(), models=()):
    return Rule(
        id=rule_id,
        name=f"{kind}-{action}",
        detector=BUILT_IN[kind],
        action=action,
        shadow=shadow,
        on_request=direction in ("request", "both"),
        on_response=direction in ("response", "both"),
        key_ids=frozenset(key_ids),
        models=frozenset(models),
        tenant="acme",
    )


def guard(*rules):
    return RequestGuard(
        Selection(rules), tenant_id=1, tenant_slug="acme", request_id="req-1", key_prefix="lp-x"
    )


def chat(*contents):
    return {"model": "m", "messages": [{"role": "user", "content": c} for c in contents], "temperature": 0}


def test_masking_a_prompt_returns_a_masked_copy_and_leaves_the_clients_payload_alone():
    payload = chat("I am ann@corp.example.org", "and nothing else")
    original = copy.deepcopy(payload)
    g = guard(rule("email", rule_id=1))

    masked = g.check_request("chat", payload)

    assert masked["messages"][0]["content"] == "I am [REDACTED:EMAIL]"
    assert masked["messages"][1] is payload["messages"][1]
    assert masked["temperature"] == 0
    assert payload == original
    [hit] = g.hits
    assert (hit.guardrail_id, hit.action, hit.shadow, hit.direction) == (1, "mask", False, "request")


def test_a_prompt_without_matches_is_returned_as_is():
    payload = chat("Hello there")
    g = guard(rule("email", rule_id=1), rule("card", "block", rule_id=2))
    assert g.check_request("chat", payload) is payload
    assert g.hits == []


def test_text_parts_completions_prompts_and_embedding_inputs_are_checked():
    g = guard(rule("card", rule_id=1))
    parts = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "card 4111 1111 1111 1111"},
                    {"type": "image_url", "image_url": {"url": "https://x/4111111111111111.png"}},
                ],
            }
        ],
    }
    masked = g.check_request("chat", parts)
    assert masked["messages"][0]["content"][0]["text"] == "card [REDACTED:CARD]"
    assert masked["messages"][0]["content"][1] is parts["messages"][0]["content"][1]

    prompt = g.check_request("completions", {"model": "m", "prompt": ["ok", "pay 4111111111111111"]})
    assert prompt["prompt"] == ["ok", "pay [REDACTED:CARD]"]
    tokens = {"model": "m", "input": [[1, 2, 3]]}
    assert g.check_request("embeddings", tokens) is tokens
    masked = g.check_request("embeddings", {"model": "m", "input": "4111111111111111"})
    assert masked["input"] == "[REDACTED:CARD]"


def test_a_block_rule_refuses_the_request_naming_the_rule():
    g = guard(rule("secret", "block", rule_id=7), rule("email", rule_id=8))
    with pytest.raises(GuardrailBlocked) as blocked:
        g.check_request("chat", chat("my key is sk-proj-abc123DEF456ghi789JKL012"))
    error = blocked.value
    assert (error.status, error.code, error.type) == (400, "guardrail_blocked", "invalid_request_error")
    assert "secret-block" in error.message
    assert [h.guardrail_id for h in g.hits] == [7]


def test_flag_and_shadow_rules_change_nothing_and_record_a_hit_each():
    payload = chat("card 4111 1111 1111 1111 from ann@corp.example.org")
    g = guard(
        rule("card", "block", rule_id=1, shadow=True),
        rule("email", "flag", rule_id=2),
        rule("email", "mask", rule_id=3, shadow=True),
    )
    assert g.check_request("chat", payload) is payload
    assert sorted((h.guardrail_id, h.action, h.shadow) for h in g.hits) == [
        (1, "block", True),
        (2, "flag", False),
        (3, "mask", True),
    ]


def test_a_request_counts_once_per_rule_whatever_the_number_of_matches():
    g = guard(rule("email", "flag", rule_id=1))
    g.check_request("chat", chat("a@b.io c@d.io", "e@f.io"))
    g.check_answer("chat", {"choices": [{"message": {"content": "g@h.io"}}]})
    assert len(g.hits) == 1


def test_direction_decides_which_side_a_rule_looks_at():
    g = guard(rule("email", rule_id=1, direction="response"), rule("card", rule_id=2, direction="request"))
    payload = chat("ann@corp.example.org 4111111111111111")
    masked = g.check_request("chat", payload)
    assert masked["messages"][0]["content"] == "ann@corp.example.org [REDACTED:CARD]"
    text = "ann@corp.example.org 4111111111111111"
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}
    g.check_answer("chat", answer)
    assert answer["choices"][0]["message"]["content"] == "[REDACTED:EMAIL] 4111111111111111"


def test_a_plain_answer_is_masked_or_blocked():
    completion = {"choices": [{"index": 0, "text": "call +44 20 7946 0958"}]}
    guard(rule("phone", rule_id=1)).check_answer("completions", completion)
    assert completion["choices"][0]["text"] == "call [REDACTED:PHONE]"
    with pytest.raises(GuardrailBlocked, match="answer was blocked"):
        guard(rule("phone", "block", rule_id=1)).check_answer(
            "chat", {"choices": [{"message": {"content": "call +44 20 7946 0958"}}]}
        )


def test_rules_are_picked_by_key_and_model():
    rules = TenantRules(
        1,
        "acme",
        [
            rule("email", rule_id=1),
            rule("card", rule_id=2, key_ids={10}),
            rule("ip", rule_id=3, models={"gpt-x"}),
        ],
    )
    assert sorted(r.id for r in rules.select(10, "gpt-x").request) == [1, 2, 3]
    assert sorted(r.id for r in rules.select(11, "other").request) == [1]
    assert rules.select(11, "other") is rules.select(11, "other")
    only_scoped = TenantRules(1, "acme", [rule("card", rule_id=2, key_ids={10})])
    assert only_scoped.select(11, "m") is None


def test_block_rules_run_first():
    rules = TenantRules(
        1,
        "acme",
        [rule("email", "flag", rule_id=1), rule("card", "block", rule_id=2), rule("ip", "mask", rule_id=3)],
    )
    assert [r.action for r in rules.rules] == ["block", "mask", "flag"]


# --- loading from the database ----------------------------------------------------------------


def _guard_for(key, model="m"):
    cache.forget()
    record = async_to_sync(authenticate)(key[1])
    return async_to_sync(cache.guard_for)(record, model, "req-1")


@pytest.mark.django_db(transaction=True)
def test_a_tenant_without_guardrails_gets_no_guard(acme):
    assert _guard_for(api_key_create(tenant=acme, name="app")) is None


@pytest.mark.django_db(transaction=True)
def test_a_tenants_active_guardrails_are_loaded_with_their_key_and_model_scope(acme, globex):
    app = api_key_create(tenant=acme, name="app")
    other = api_key_create(tenant=acme, name="other")
    Guardrail.objects.create(tenant=acme, name="cards", detector="card", action="mask")
    Guardrail.objects.create(tenant=acme, name="off", detector="email", action="block", is_active=False)
    Guardrail.objects.create(tenant=acme, name="gpt-only", detector="ip", action="mask", models=["gpt-x"])
    Guardrail.objects.create(tenant=globex, name="globex-emails", detector="email", action="block")
    scoped = Guardrail.objects.create(
        tenant=acme, name="app-only", detector="secret", action="block", direction="request"
    )
    scoped.api_keys.set([app[0]])

    names = {r.name for r in _guard_for(app).selection.request}
    assert names == {"cards", "app-only"}
    assert {r.name for r in _guard_for(other).selection.request} == {"cards"}
    assert {r.name for r in _guard_for(other, "gpt-x").selection.request} == {"cards", "gpt-only"}
    assert {r.name for r in _guard_for(app).selection.response} == {"cards"}


# --- the cost on the hot path -------------------------------------------------------------------


def _prompt_2kb():
    rng = random.Random(7)
    words = " ".join(
        [
            "the of and to in is you that it was for on are as with they at be this have from or one had by",
            "word but not what all were we when your can said there use each which do how their if will up",
            "2024-01-15 $1,250.00 v1.2.3 42 3.14 Q3 10:30 #1234 (see above) e.g. x=y+z; foo(bar) Order 7781",
        ]
    ).split(" ")
    text = " ".join(rng.choice(words) for _ in range(500))[:1900]
    return text + " mail ann@corp.example.org card 4111 1111 1111 1111"


def test_the_request_side_check_with_every_built_in_detector_costs_little_on_a_2kb_prompt(capsys):
    kinds = ["email", "phone", "card", "iban", "secret", "ip"]
    g = guard(*[rule(kind, rule_id=i) for i, kind in enumerate(kinds, 1)])
    payload = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": _prompt_2kb()},
        ],
    }
    masked = g.check_request("chat", payload)
    assert masked["messages"][1]["content"].endswith("mail [REDACTED:EMAIL] card [REDACTED:CARD]")

    runs = 500
    seconds = timeit.timeit(lambda: g.check_request("chat", payload), number=runs) / runs
    clean = {"model": "m", "messages": [{"role": "user", "content": _prompt_2kb()[:1900]}]}
    clean_seconds = timeit.timeit(lambda: g.check_request("chat", clean), number=runs) / runs
    with capsys.disabled():
        print(
            f"\nguardrails request check, 6 built-in detectors, 2 kB prompt: {seconds * 1e3:.3f} ms "
            f"(with 2 matches masked), {clean_seconds * 1e3:.3f} ms (nothing to mask); target < 0.3 ms"
        )


def test_an_anthropic_request_has_its_system_prompt_and_text_blocks_masked():
    g = guard(rule("email", rule_id=1))
    image = {"type": "image", "source": {"type": "url", "url": "x"}}
    text = {"type": "text", "text": "mail bob@corp.example.org"}
    body = {
        "model": "claude",
        "max_tokens": 10,
        "system": [{"type": "text", "text": "Owner: ann@corp.example.org"}],
        "messages": [{"role": "user", "content": [text, image]}, {"role": "assistant", "content": "noted"}],
    }
    masked = g.check_anthropic_request(body)
    assert masked["system"] == [{"type": "text", "text": "Owner: [REDACTED:EMAIL]"}]
    assert masked["messages"][0]["content"][0]["text"] == "mail [REDACTED:EMAIL]"
    assert masked["messages"][0]["content"][1] is body["messages"][0]["content"][1]
    assert masked["messages"][1] is body["messages"][1]
    assert body["system"][0]["text"] == "Owner: ann@corp.example.org"
    plain = {"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    assert g.check_anthropic_request(plain) is plain
