"""/api/v1/guardrails/ and /api/v1/guardrail-hits/: roles, tenant scope (charlie of globex is the outsider),
validation in the API's error shape, audit rows."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.chain import verify_chain
from audit.models import AuditLog
from tenants.models import Guardrail, GuardrailHit
from tests.api_support import API, error_of, ids, last_audit

pytest_plugins = ["tests.api_fixtures"]
pytestmark = pytest.mark.django_db

CATASTROPHIC = r"(a+)+$"


def rule_payload(**fields):
    return {"name": "no-secrets", "detector": "secret", "direction": "both", "action": "block", **fields}


def detail(guardrail):
    return f"{API}/guardrails/{guardrail.pk}/"


# --- who sees what ------------------------------------------------------------------------------


def test_who_sees_which_guardrails(platform, alice, bob, charlie, anonymous, acme_world, globex_world):
    acme_rule, globex_rule = acme_world["guardrail"], globex_world["guardrail"]

    assert ids(platform.get(f"{API}/guardrails/")) == sorted([acme_rule.pk, globex_rule.pk])
    assert ids(alice.get(f"{API}/guardrails/")) == [acme_rule.pk]
    assert ids(charlie.get(f"{API}/guardrails/")) == [globex_rule.pk]
    assert ids(charlie.get(f"{API}/guardrails/", {"tenant": "acme"})) == [globex_rule.pk]
    assert bob.get(f"{API}/guardrails/").status_code == 403
    assert anonymous.get(f"{API}/guardrails/").status_code == 401


def test_a_guardrail_reads_back_whole(alice, platform, bob, charlie, acme_world):
    rule = acme_world["guardrail"]
    rule.api_keys.set([acme_world["api_key"]])
    rule.models = ["acme-model"]
    rule.save()

    body = alice.get(detail(rule)).json()

    assert body == {
        **body,
        "id": rule.pk,
        "tenant": acme_world["tenant"].pk,
        "name": "acme-cards",
        "detector": "card",
        "pattern": "",
        "words": [],
        "direction": "both",
        "action": "mask",
        "shadow": False,
        "models": ["acme-model"],
        "api_keys": [acme_world["api_key"].pk],
        "is_active": True,
    }
    assert platform.get(detail(rule)).status_code == 200
    assert bob.get(detail(rule)).status_code == 403
    assert charlie.get(detail(rule)).status_code == 404


def test_the_list_is_paginated(alice, acme):
    for i in range(5):
        Guardrail.objects.create(tenant=acme, name=f"rule-{i}", detector="email", action="flag")

    first = alice.get(f"{API}/guardrails/", {"page_size": 2}).json()
    last = alice.get(f"{API}/guardrails/", {"page_size": 2, "page": 3}).json()

    assert first["count"] == 5 and len(first["results"]) == 2 and first["next"]
    assert [r["name"] for r in last["results"]] == ["rule-4"] and last["next"] is None


# --- creating -----------------------------------------------------------------------------------


def test_a_tenant_admin_creates_a_guardrail_in_their_tenant_and_it_is_audited(
    alice, acme, acme_admin, acme_world
):
    key = acme_world["api_key"]

    response = alice.post(
        f"{API}/guardrails/",
        rule_payload(
            name="no-order-ids",
            detector="regex",
            pattern=r"ORD-\d{6}",
            direction="response",
            action="mask",
            shadow=True,
            models=["acme-model"],
            api_keys=[key.pk],
        ),
    )

    assert response.status_code == 201, response.content
    body = response.json()
    rule = Guardrail.objects.get(pk=body["id"])
    assert (rule.tenant, rule.detector, rule.pattern, rule.action, rule.shadow) == (
        acme,
        "regex",
        r"ORD-\d{6}",
        "mask",
        True,
    )
    assert list(rule.api_keys.all()) == [key] and rule.models == ["acme-model"] and rule.is_active
    assert (body["tenant"], body["api_keys"]) == (acme.pk, [key.pk])
    audit = last_audit("guardrail.create")
    assert (audit.actor, audit.tenant, audit.ip, audit.target_id) == (
        acme_admin,
        acme,
        "203.0.113.5",
        str(rule.pk),
    )
    assert audit.metadata["api_keys"] == [key.prefix]
    assert "ORD-" not in str(audit.metadata)
    assert verify_chain(audit.chain).problem is None


def test_a_platform_admin_names_the_tenant(platform, acme, globex):
    refused = platform.post(f"{API}/guardrails/", rule_payload())
    created = platform.post(f"{API}/guardrails/", rule_payload(tenant=globex.pk, is_active=False))

    assert refused.status_code == 400 and "tenant" in error_of(refused)["fields"]
    assert created.status_code == 201
    rule = Guardrail.objects.get(pk=created.json()["id"])
    assert (rule.tenant, rule.is_active) == (globex, False)


def test_a_user_cannot_create_change_or_delete_guardrails(bob, acme_world):
    rule = acme_world["guardrail"]

    assert bob.post(f"{API}/guardrails/", rule_payload()).status_code == 403
    assert bob.patch(detail(rule), {"action": "block"}).status_code == 403
    assert bob.delete(detail(rule)).status_code == 403
    assert Guardrail.objects.get(pk=rule.pk).action == "mask"


def test_a_catastrophic_regex_is_refused_as_the_admin_and_the_command_refuse_it(alice, acme_world):
    audits = AuditLog.objects.count()

    response = alice.post(f"{API}/guardrails/", rule_payload(detector="regex", pattern=CATASTROPHIC))

    assert response.status_code == 400
    error = error_of(response)
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid")
    assert "backtracks catastrophically" in error["fields"]["pattern"][0]
    assert error["message"].startswith("pattern: the regular expression backtracks catastrophically")
    assert not Guardrail.objects.filter(name="no-secrets").exists()
    assert AuditLog.objects.count() == audits


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"detector": "regex"}, "pattern"),
        ({"detector": "regex", "pattern": "("}, "pattern"),
        ({"detector": "regex", "pattern": "x*"}, "pattern"),
        ({"pattern": "sk-.*"}, "pattern"),
        ({"detector": "wordlist"}, "words"),
        ({"detector": "wordlist", "words": ["  "]}, "words"),
        ({"words": ["secret"]}, "words"),
        ({"detector": "credit-card"}, "detector"),
        ({"direction": "sideways"}, "direction"),
        ({"action": "delete"}, "action"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"models": "gpt-4o"}, "models"),
        ({"api_keys": [999_999]}, "api_keys"),
    ],
)
def test_bad_guardrails_are_refused_in_the_apis_error_shape(alice, acme_world, fields, field):
    response = alice.post(f"{API}/guardrails/", rule_payload(**fields))

    assert response.status_code == 400, response.content
    assert field in error_of(response)["fields"]
    assert not Guardrail.objects.filter(name="no-secrets").exists()


def test_names_are_unique_in_a_tenant_only(alice, charlie, acme_world):
    taken = alice.post(f"{API}/guardrails/", rule_payload(name="acme-cards"))
    elsewhere = charlie.post(f"{API}/guardrails/", rule_payload(name="acme-cards"))

    assert taken.status_code == 400 and "name" in error_of(taken)["fields"]
    assert elsewhere.status_code == 201


def test_a_wordlist_guardrail_is_created_with_its_words(alice):
    response = alice.post(
        f"{API}/guardrails/", rule_payload(detector="wordlist", words=["project falcon", "Q3 numbers"])
    )

    assert response.status_code == 201
    assert Guardrail.objects.get(pk=response.json()["id"]).words == ["project falcon", "Q3 numbers"]


# --- the outsider ---------------------------------------------------------------------------------


def test_the_outsider_cannot_read_change_or_delete_another_tenants_guardrail(charlie, acme_world):
    rule = acme_world["guardrail"]

    assert charlie.get(detail(rule)).status_code == 404
    assert charlie.patch(detail(rule), {"action": "flag", "is_active": False}).status_code == 404
    assert charlie.delete(detail(rule)).status_code == 404
    rule.refresh_from_db()
    assert (rule.action, rule.is_active) == ("mask", True)


def test_the_outsider_cannot_name_another_tenants_keys_or_tenant(charlie, acme_world, globex_world):
    acme_key = acme_world["api_key"].pk
    globex_rule = globex_world["guardrail"]

    with_key = charlie.post(f"{API}/guardrails/", rule_payload(api_keys=[acme_key]))
    with_tenant = charlie.post(f"{API}/guardrails/", rule_payload(tenant=acme_world["tenant"].pk))
    patched = charlie.patch(detail(globex_rule), {"api_keys": [globex_world["api_key"].pk, acme_key]})

    assert with_key.status_code == 400 and "api_keys" in error_of(with_key)["fields"]
    assert with_tenant.status_code == 400 and "tenant" in error_of(with_tenant)["fields"]
    assert patched.status_code == 400 and "api_keys" in error_of(patched)["fields"]
    assert not acme_world["tenant"].guardrails.exclude(pk=acme_world["guardrail"].pk).exists()
    assert not globex_rule.api_keys.exists()


def test_a_platform_admin_cannot_scope_a_guardrail_to_another_tenants_key(platform, acme_world, globex_world):
    acme_rule, globex_key = acme_world["guardrail"], globex_world["api_key"].pk

    created = platform.post(
        f"{API}/guardrails/", rule_payload(tenant=acme_world["tenant"].pk, api_keys=[globex_key])
    )
    patched = platform.patch(detail(acme_rule), {"api_keys": [globex_key]})

    assert created.status_code == 400 and "api_keys" in error_of(created)["fields"]
    assert patched.status_code == 400 and "api_keys" in error_of(patched)["fields"]
    assert not acme_rule.api_keys.exists()


# --- changing and deleting ---------------------------------------------------------------------


def test_a_tenant_admin_changes_their_guardrail_and_the_change_is_audited(
    alice, acme, acme_admin, acme_world
):
    rule, key = acme_world["guardrail"], acme_world["api_key"]

    response = alice.patch(
        detail(rule),
        {"detector": "regex", "pattern": r"ACME-\d+", "action": "block", "api_keys": [key.pk]},
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["detector"], body["pattern"], body["action"], body["api_keys"]) == (
        "regex",
        r"ACME-\d+",
        "block",
        [key.pk],
    )
    rule.refresh_from_db()
    assert (rule.detector, rule.pattern, rule.action) == ("regex", r"ACME-\d+", "block")
    audit = last_audit("guardrail.update")
    assert (audit.actor, audit.tenant, audit.ip) == (acme_admin, acme, "203.0.113.5")
    assert audit.metadata["changed"] == {
        "detector": ["card", "regex"],
        "pattern": ["", "(not recorded)"],
        "action": ["mask", "block"],
        "api_keys": [[], [key.prefix]],
    }
    assert audit.metadata["via"] == "api"


def test_a_change_to_nothing_writes_no_audit_row(alice, acme_world):
    rule = acme_world["guardrail"]
    before = AuditLog.objects.count()

    assert alice.patch(detail(rule), {"action": "mask", "api_keys": []}).status_code == 200
    assert AuditLog.objects.count() == before


def test_a_catastrophic_regex_is_refused_on_change_too(alice, acme_world):
    rule = acme_world["guardrail"]

    response = alice.patch(detail(rule), {"detector": "regex", "pattern": CATASTROPHIC})

    assert response.status_code == 400
    assert "backtracks catastrophically" in error_of(response)["fields"]["pattern"][0]
    rule.refresh_from_db()
    assert (rule.detector, rule.pattern) == ("card", "")


def test_a_platform_admin_changes_any_tenants_guardrail(platform, globex_world):
    rule = globex_world["guardrail"]

    assert platform.patch(detail(rule), {"shadow": True}).json()["shadow"] is True
    assert last_audit("guardrail.update").metadata["changed"] == {"shadow": [False, True]}


@pytest.mark.parametrize("who", ["alice", "platform"])
def test_a_guardrail_is_deleted_with_its_hits_and_the_deletion_is_audited(request, who, acme, acme_world):
    client = request.getfixturevalue(who)
    rule = acme_world["guardrail"]

    assert client.delete(detail(rule)).status_code == 204

    assert not Guardrail.objects.filter(pk=rule.pk).exists()
    assert not GuardrailHit.objects.filter(guardrail_id=rule.pk).exists()
    audit = last_audit("guardrail.delete")
    assert (audit.target_id, audit.tenant) == (str(rule.pk), acme)


# --- hits -------------------------------------------------------------------------------------------


@pytest.fixture
def hits(acme, acme_world):
    """acme-cards (masked on three days, and in shadow mode once) and a flag rule."""
    cards = acme_world["guardrail"]
    flags = Guardrail.objects.create(tenant=acme, name="flag-emails", detector="email", action="flag")
    today = timezone.now().date()  # the hits' days are UTC days
    GuardrailHit.objects.filter(guardrail=cards).delete()
    rows = {
        "old": GuardrailHit.objects.create(
            guardrail=cards, day=today - timedelta(days=10), action="mask", count=2
        ),
        "yesterday": GuardrailHit.objects.create(
            guardrail=cards, day=today - timedelta(days=1), action="mask", count=5
        ),
        "today": GuardrailHit.objects.create(guardrail=cards, day=today, action="mask", count=7),
        "shadow": GuardrailHit.objects.create(
            guardrail=cards, day=today, action="block", shadow=True, count=1
        ),
        "flag": GuardrailHit.objects.create(guardrail=flags, day=today, action="flag", count=3),
    }
    return {"day": today, "cards": cards, "flags": flags, **rows}


def hit_ids(client, **params):
    response = client.get(f"{API}/guardrail-hits/", params)
    assert response.status_code == 200, response.content
    return ids(response)


def test_who_sees_which_hits(platform, alice, bob, charlie, anonymous, acme_world, globex_world):
    acme_hit, globex_hit = acme_world["guardrail_hit"], globex_world["guardrail_hit"]

    assert hit_ids(platform) == sorted([acme_hit.pk, globex_hit.pk])
    assert hit_ids(alice) == [acme_hit.pk]
    assert hit_ids(charlie) == [globex_hit.pk]
    assert bob.get(f"{API}/guardrail-hits/").status_code == 403
    assert anonymous.get(f"{API}/guardrail-hits/").status_code == 401
    row = alice.get(f"{API}/guardrail-hits/").json()["results"][0]
    assert row == {
        "id": acme_hit.pk,
        "day": acme_hit.day.isoformat(),
        "tenant": acme_world["tenant"].pk,
        "guardrail": acme_world["guardrail"].pk,
        "guardrail_name": "acme-cards",
        "action": "mask",
        "shadow": False,
        "count": 4,
    }


def test_the_outsider_sees_no_hits_of_another_tenant_whatever_the_filter(charlie, acme_world, globex_world):
    assert hit_ids(charlie, guardrail=acme_world["guardrail"].pk) == []
    assert hit_ids(charlie, tenant="acme") == []
    assert hit_ids(charlie, action="mask") == [globex_world["guardrail_hit"].pk]


def test_hits_are_filtered_by_day_guardrail_action_and_shadow(alice, hits):
    today = hits["day"]
    pk = {name: hits[name].pk for name in ("old", "yesterday", "today", "shadow", "flag")}

    assert hit_ids(alice, since=(today - timedelta(days=1)).isoformat()) == sorted(
        [pk["yesterday"], pk["today"], pk["shadow"], pk["flag"]]
    )
    assert hit_ids(alice, until=today.isoformat()) == sorted([pk["old"], pk["yesterday"]])
    assert hit_ids(alice, since=(today - timedelta(days=1)).isoformat(), until=today.isoformat()) == [
        pk["yesterday"]
    ]
    assert hit_ids(alice, guardrail=hits["flags"].pk) == [pk["flag"]]
    assert hit_ids(alice, action="block") == [pk["shadow"]]
    assert hit_ids(alice, shadow="true") == [pk["shadow"]]
    assert hit_ids(alice, guardrail=hits["cards"].pk, action="mask", shadow="false") == sorted(
        [pk["old"], pk["yesterday"], pk["today"]]
    )


def test_hits_come_newest_day_first_in_pages(alice, hits):
    first = alice.get(f"{API}/guardrail-hits/", {"page_size": 3}).json()
    second = alice.get(f"{API}/guardrail-hits/", {"page_size": 3, "page": 2}).json()

    assert first["count"] == 5 and first["next"] and second["next"] is None
    days = [row["day"] for row in first["results"] + second["results"]]
    assert days == sorted(days, reverse=True)
    assert second["results"][-1]["id"] == hits["old"].pk


@pytest.mark.parametrize(
    ("params", "field"),
    [({"since": "yesterday"}, "since"), ({"action": "erase"}, "action"), ({"guardrail": "x"}, "guardrail")],
)
def test_bad_hit_filters_are_refused_in_the_apis_error_shape(alice, params, field):
    response = alice.get(f"{API}/guardrail-hits/", params)

    assert response.status_code == 400 and field in error_of(response)["fields"]


def test_hits_are_read_only(platform, acme_world):
    assert platform.post(f"{API}/guardrail-hits/", {}).status_code == 405
