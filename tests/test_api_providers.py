import pytest

from providers.models import Provider
from tests.api_support import API, error_of, ids, last_audit

pytest_plugins = ["tests.api_fixtures"]

OPENAI = {"name": "openai", "kind": "openai", "base_url": "https://api.openai.com/v1"}


@pytest.mark.django_db
def test_who_sees_which_providers(platform, alice, charlie, bob, acme_world, globex_world, shared):
    acme_p, globex_p, shared_p = acme_world["provider"], globex_world["provider"], shared["provider"]

    assert ids(platform.get(f"{API}/providers/")) == sorted([acme_p.pk, globex_p.pk, shared_p.pk])
    assert ids(alice.get(f"{API}/providers/")) == sorted([acme_p.pk, shared_p.pk])
    assert ids(charlie.get(f"{API}/providers/")) == sorted([globex_p.pk, shared_p.pk])
    assert bob.get(f"{API}/providers/").status_code == 403
    assert bob.post(f"{API}/providers/", OPENAI).status_code == 403


@pytest.mark.django_db
def test_the_outsider_cannot_read_change_or_delete_another_tenants_provider(charlie, acme_world):
    provider = acme_world["provider"]

    assert charlie.get(f"{API}/providers/{provider.pk}/").status_code == 404
    assert charlie.patch(f"{API}/providers/{provider.pk}/", {"is_active": False}).status_code == 404
    assert charlie.delete(f"{API}/providers/{provider.pk}/").status_code == 404
    assert Provider.objects.get(pk=provider.pk).is_active


@pytest.mark.django_db
def test_the_credential_is_write_only_encrypted_and_never_audited(alice, acme, acme_admin):
    response = alice.post(f"{API}/providers/", {**OPENAI, "api_key": "sk-live-secret-123"})

    assert response.status_code == 201
    body = response.json()
    assert body["has_api_key"] is True and "api_key" not in body and "encrypted_api_key" not in body
    provider = Provider.objects.get(pk=body["id"])
    assert provider.tenant == acme
    assert provider.get_api_key() == "sk-live-secret-123"
    assert "sk-live-secret-123" not in provider.encrypted_api_key
    assert "sk-live-secret-123" not in alice.get(f"{API}/providers/{provider.pk}/").content.decode()
    audit = last_audit("provider.create")
    assert audit.actor == acme_admin and audit.tenant == acme
    assert audit.metadata["changed"]["encrypted_api_key"] == ["[REDACTED]", "[REDACTED]"]
    assert "sk-live-secret-123" not in str(audit.metadata)


@pytest.mark.django_db
def test_a_credential_is_replaced_or_removed_and_only_that_it_changed_is_audited(alice, acme_world):
    provider = acme_world["provider"]

    alice.patch(f"{API}/providers/{provider.pk}/", {"api_key": "sk-one"})
    assert Provider.objects.get(pk=provider.pk).get_api_key() == "sk-one"
    assert last_audit("provider.update").metadata["changed"] == {
        "encrypted_api_key": ["[REDACTED]", "[REDACTED]"]
    }

    response = alice.patch(f"{API}/providers/{provider.pk}/", {"api_key": ""})
    assert response.json()["has_api_key"] is False


@pytest.mark.django_db
def test_a_tenant_admin_sees_but_cannot_change_a_shared_provider(alice, shared):
    provider = shared["provider"]

    assert alice.get(f"{API}/providers/{provider.pk}/").status_code == 200
    assert alice.patch(f"{API}/providers/{provider.pk}/", {"is_active": False}).status_code == 403
    assert alice.delete(f"{API}/providers/{provider.pk}/").status_code == 403
    assert Provider.objects.get(pk=provider.pk).is_active


@pytest.mark.django_db
def test_a_tenant_admin_cannot_create_a_shared_provider_or_one_of_another_tenant(alice, globex):
    assert alice.post(f"{API}/providers/", {**OPENAI, "tenant": None}).status_code == 403
    other = alice.post(f"{API}/providers/", {**OPENAI, "tenant": globex.pk})
    assert other.status_code == 400 and "tenant" in error_of(other)["fields"]
    assert not Provider.objects.exists()


@pytest.mark.django_db
def test_a_tenant_admin_cannot_move_their_provider_to_another_tenant(alice, globex, acme_world):
    provider = acme_world["provider"]

    response = alice.patch(f"{API}/providers/{provider.pk}/", {"tenant": globex.pk})

    assert response.status_code == 400
    assert Provider.objects.get(pk=provider.pk).tenant_id == acme_world["tenant"].pk


@pytest.mark.django_db
def test_a_platform_admin_creates_a_shared_provider(platform):
    response = platform.post(f"{API}/providers/", {**OPENAI, "timeout_seconds": 30})

    assert response.status_code == 201 and response.json()["tenant"] is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"base_url": "ftp://x"}, "base_url"),
        ({"base_url": ""}, "base_url"),
        ({"kind": "nope"}, "kind"),
        ({"timeout_seconds": "nan"}, "timeout_seconds"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"api_key_env": "1BAD"}, "api_key_env"),
        ({"extra_headers": {"X-A": 1}}, "extra_headers"),
        ({"options": ["not", "an", "object"]}, "options"),
        ({"options": {"k": "nul\u0000byte"}}, "options"),
        ({"name": "acme-mock"}, "__all__"),
    ],
)
def test_bad_provider_payloads_are_refused_with_the_field_named(alice, acme_world, payload, field):
    response = alice.post(f"{API}/providers/", {**OPENAI, **payload})

    assert response.status_code == 400
    fields = error_of(response)["fields"]
    assert field in fields or (field == "__all__" and ("non_field_errors" in fields or "__all__" in fields))
    assert Provider.objects.count() == 1


@pytest.mark.django_db
def test_a_tenant_admin_deletes_their_provider_and_it_is_audited(alice, acme_world):
    provider = acme_world["provider"]

    assert alice.delete(f"{API}/providers/{provider.pk}/").status_code == 204

    assert not Provider.objects.filter(pk=provider.pk).exists()
    assert last_audit("provider.delete").target_id == str(provider.pk)
