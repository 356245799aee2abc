"""Guardrails in the admin: scoped to the tenant (charlie of globex is the outsider), checked, and counted."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditLog
from keys.services import api_key_create
from tenants.models import Guardrail, GuardrailHit

ADD_URL = reverse("admin:tenants_guardrail_add")
CHANGELIST_URL = reverse("admin:tenants_guardrail_changelist")

pytestmark = pytest.mark.django_db


def _client(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice(acme_admin):
    return _client(acme_admin)


@pytest.fixture
def charlie(globex_admin):
    return _client(globex_admin)


@pytest.fixture
def root(platform_admin):
    return _client(platform_admin)


@pytest.fixture
def acme_rule(acme):
    return Guardrail.objects.create(tenant=acme, name="acme-cards", detector="card", action="mask")


@pytest.fixture
def globex_rule(globex):
    return Guardrail.objects.create(tenant=globex, name="globex-emails", detector="email", action="block")


def change_url(guardrail):
    return reverse("admin:tenants_guardrail_change", args=[guardrail.pk])


def payload(**fields):
    return {
        "name": "no-secrets",
        "is_active": "on",
        "detector": "secret",
        "pattern": "",
        "words": "",
        "direction": "both",
        "action": "block",
        "api_keys": [],
        "models": "",
        **fields,
    }


def listed(client):
    response = client.get(CHANGELIST_URL)
    assert response.status_code == 200
    return {g.pk for g in response.context["cl"].result_list}


def test_a_tenant_admin_lists_only_their_tenants_guardrails(acme_rule, globex_rule, alice, charlie, root):
    assert listed(alice) == {acme_rule.pk}
    assert listed(charlie) == {globex_rule.pk}
    assert listed(root) == {acme_rule.pk, globex_rule.pk}
    assert b"acme-cards" not in charlie.get(CHANGELIST_URL, {"q": "acme"}).content


def test_an_outsider_can_neither_open_change_nor_delete_another_tenants_guardrail(acme_rule, charlie, alice):
    response = charlie.get(change_url(acme_rule))
    assert response.status_code in (302, 404)

    charlie.post(change_url(acme_rule), payload(name="hijacked", detector="email", action="flag"))
    charlie.post(reverse("admin:tenants_guardrail_delete", args=[acme_rule.pk]), {"post": "yes"})
    charlie.post(
        CHANGELIST_URL, {"action": "delete_selected", "post": "yes", "_selected_action": [acme_rule.pk]}
    )
    acme_rule.refresh_from_db()
    assert (acme_rule.name, acme_rule.action) == ("acme-cards", "mask")

    # The same change from acme's own admin goes through: the refusals above are scoping.
    response = alice.post(change_url(acme_rule), payload(name="acme-cards", detector="card", action="flag"))
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    acme_rule.refresh_from_db()
    assert acme_rule.action == "flag"


def test_an_outsider_is_offered_none_of_another_tenants_keys(acme, globex, charlie, root):
    acme_key, _ = api_key_create(tenant=acme, name="acme-app")
    globex_key, _ = api_key_create(tenant=globex, name="globex-app")

    def offered(client):
        response = client.get(ADD_URL)
        assert response.status_code == 200
        field = response.context["adminform"].form.fields["api_keys"]
        return set(field.queryset.values_list("pk", flat=True))

    assert offered(charlie) == {globex_key.pk}
    assert {acme_key.pk, globex_key.pk} <= offered(root)


def test_a_posted_key_of_another_tenant_is_refused(acme, globex, charlie):
    acme_key, _ = api_key_create(tenant=acme, name="acme-app")
    response = charlie.post(ADD_URL, payload(api_keys=[acme_key.pk]))
    assert response.status_code == 200
    assert "api_keys" in response.context["adminform"].form.errors
    assert not Guardrail.objects.exists()


def test_a_platform_admin_cannot_scope_a_guardrail_to_another_tenants_key(acme, globex, root):
    globex_key, _ = api_key_create(tenant=globex, name="globex-app")
    response = root.post(ADD_URL, payload(tenant=acme.pk, api_keys=[globex_key.pk]))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["api_keys"] == ["Pick keys of the guardrail's own tenant."]


def test_what_a_tenant_admin_creates_belongs_to_their_tenant_and_is_audited(
    acme, globex, charlie, globex_admin
):
    globex_key, _ = api_key_create(tenant=globex, name="globex-app")
    response = charlie.post(ADD_URL, payload(tenant=acme.pk, api_keys=[globex_key.pk], models="gpt-x, gpt-y"))
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    guardrail = Guardrail.objects.get()
    assert guardrail.tenant == globex
    assert list(guardrail.api_keys.all()) == [globex_key]
    assert guardrail.models == ["gpt-x", "gpt-y"]
    audit = AuditLog.objects.get(action="guardrail.create")
    assert (audit.actor, audit.tenant) == (globex_admin, globex)


def test_a_catastrophic_regex_is_refused_in_the_form(charlie):
    response = charlie.post(ADD_URL, payload(detector="regex", pattern=r"(a+)+$"))
    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["pattern"]
    assert "backtracks catastrophically" in error
    assert not Guardrail.objects.exists()

    response = charlie.post(ADD_URL, payload(detector="regex", pattern=r"EMP-\d{6}"))
    assert response.status_code == 302
    assert Guardrail.objects.get().pattern == r"EMP-\d{6}"


def test_a_word_list_is_edited_one_word_a_line(charlie):
    response = charlie.post(ADD_URL, payload(detector="wordlist", words="apollo\r\n  zeus \r\n\r\napollo"))
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    guardrail = Guardrail.objects.get()
    assert guardrail.words == ["apollo", "zeus"]
    assert charlie.post(ADD_URL, payload(name="empty", detector="wordlist", words="")).status_code == 200


def test_the_list_shows_what_each_rule_did_in_the_last_seven_days(acme_rule, globex_rule, alice):
    today = timezone.now().date()
    shadow_rule = Guardrail.objects.create(
        tenant=acme_rule.tenant, name="would-block", detector="ip", action="block", shadow=True
    )
    GuardrailHit.objects.create(guardrail=acme_rule, day=today, action="mask", count=3)
    GuardrailHit.objects.create(guardrail=acme_rule, day=today - timedelta(days=6), action="mask", count=2)
    GuardrailHit.objects.create(guardrail=acme_rule, day=today - timedelta(days=7), action="mask", count=100)
    GuardrailHit.objects.create(guardrail=acme_rule, day=today, action="flag", count=1)
    GuardrailHit.objects.create(guardrail=shadow_rule, day=today, action="block", shadow=True, count=4)
    GuardrailHit.objects.create(guardrail=globex_rule, day=today, action="block", count=9)

    response = alice.get(CHANGELIST_URL)
    rows = {g.name: g for g in response.context["cl"].result_list}
    admin = response.context["cl"].model_admin
    assert admin.recent_hits(rows["acme-cards"]) == "5 masked, 1 flagged"
    assert admin.recent_hits(rows["would-block"]) == "4 would block"
    content = response.content.decode()
    assert "5 masked, 1 flagged" in content and "4 would block" in content
    assert "9 blocked" not in content
    assert "5 masked, 1 flagged" in alice.get(change_url(acme_rule)).content.decode()


def test_every_page_of_guardrails_renders_for_a_tenant_admin_and_a_platform_admin(acme_rule, alice, root):
    for client in (alice, root):
        for url in (CHANGELIST_URL, ADD_URL, change_url(acme_rule)):
            assert client.get(url).status_code == 200
