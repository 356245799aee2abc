import pytest

from tenants.models import Tenant
from tests.api_support import API, error_of, ids, last_audit

pytest_plugins = ["tests.api_fixtures"]


@pytest.mark.django_db
def test_a_platform_admin_lists_every_tenant_and_a_tenant_admin_only_theirs(
    platform, alice, charlie, acme, globex
):
    assert ids(platform.get(f"{API}/tenants/")) == [acme.pk, globex.pk]
    assert ids(alice.get(f"{API}/tenants/")) == [acme.pk]
    assert ids(charlie.get(f"{API}/tenants/")) == [globex.pk]


@pytest.mark.django_db
def test_a_user_and_an_anonymous_caller_are_refused(bob, anonymous, acme):
    assert bob.get(f"{API}/tenants/").status_code == 403
    assert bob.get(f"{API}/tenants/{acme.pk}/").status_code == 403
    assert bob.patch(f"{API}/tenants/{acme.pk}/", {"name": "x"}).status_code == 403
    assert anonymous.get(f"{API}/tenants/").status_code == 401


@pytest.mark.django_db
def test_the_outsider_can_neither_read_nor_change_nor_delete_another_tenant(charlie, acme):
    for response in (
        charlie.get(f"{API}/tenants/{acme.pk}/"),
        charlie.patch(f"{API}/tenants/{acme.pk}/", {"name": "pwned"}),
        charlie.delete(f"{API}/tenants/{acme.pk}/"),
    ):
        assert response.status_code == 404
    acme.refresh_from_db()
    assert acme.name == "Acme"


@pytest.mark.django_db
def test_a_platform_admin_creates_a_tenant_and_it_is_audited(platform, platform_admin):
    response = platform.post(
        f"{API}/tenants/", {"slug": "initech", "name": "Initech", "allowed_models": ["gpt-4o", "gpt-4o"]}
    )

    assert response.status_code == 201
    tenant = Tenant.objects.get(slug="initech")
    assert (response.json()["id"], tenant.allowed_models) == (tenant.pk, ["gpt-4o"])
    audit = last_audit("tenant.create")
    assert (audit.actor, audit.tenant, audit.ip) == (platform_admin, tenant, "203.0.113.5")
    assert audit.metadata["changed"]["slug"] == [None, "initech"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"slug": "Not A Slug"}, "slug"),
        ({"slug": "acme"}, "slug"),
        ({"slug": "x", "retention_days": 0}, "retention_days"),
        ({"slug": "x", "cache_ttl_seconds": -1}, "cache_ttl_seconds"),
        ({"slug": "x", "allowed_models": "gpt-4o"}, "allowed_models"),
        ({"slug": "x", "redis_down_policy": "maybe"}, "redis_down_policy"),
    ],
)
def test_bad_tenant_payloads_are_refused_with_the_field_named(platform, acme, payload, field):
    response = platform.post(f"{API}/tenants/", payload)

    assert response.status_code == 400
    assert field in error_of(response)["fields"]
    assert Tenant.objects.count() == 1


@pytest.mark.django_db
def test_a_tenant_admin_cannot_create_tenants(alice):
    assert alice.post(f"{API}/tenants/", {"slug": "mine"}).status_code == 403
    assert not Tenant.objects.filter(slug="mine").exists()


@pytest.mark.django_db
def test_a_tenant_admin_changes_their_tenants_settings_with_before_and_after_audited(alice, acme, acme_admin):
    response = alice.patch(f"{API}/tenants/{acme.pk}/", {"name": "Acme Corp", "retention_days": 30})

    assert response.status_code == 200
    acme.refresh_from_db()
    assert (acme.name, acme.retention_days) == ("Acme Corp", 30)
    audit = last_audit("tenant.update")
    assert audit.actor == acme_admin and audit.tenant == acme
    assert audit.metadata["changed"] == {"name": ["Acme", "Acme Corp"], "retention_days": [90, 30]}


@pytest.mark.django_db
@pytest.mark.parametrize("payload", [{"is_active": False}, {"slug": "hijacked"}])
def test_a_tenant_admin_cannot_change_the_slug_or_deactivate_their_tenant(alice, platform, acme, payload):
    assert alice.patch(f"{API}/tenants/{acme.pk}/", payload).status_code == 403
    acme.refresh_from_db()
    assert (acme.slug, acme.is_active) == ("acme", True)

    assert platform.patch(f"{API}/tenants/{acme.pk}/", payload).status_code == 200


@pytest.mark.django_db
def test_an_unchanged_patch_writes_no_audit_row(alice, acme):
    alice.patch(f"{API}/tenants/{acme.pk}/", {"name": "Acme"})

    assert last_audit("tenant.update") is None


@pytest.mark.django_db
def test_only_a_platform_admin_deletes_a_tenant_and_not_while_it_has_users(
    platform, alice, acme, acme_admin, globex
):
    assert alice.delete(f"{API}/tenants/{acme.pk}/").status_code == 403

    conflict = platform.delete(f"{API}/tenants/{acme.pk}/")
    assert conflict.status_code == 409 and error_of(conflict)["type"] == "conflict_error"
    assert Tenant.objects.filter(pk=acme.pk).exists()

    assert platform.delete(f"{API}/tenants/{globex.pk}/").status_code == 204
    assert not Tenant.objects.filter(pk=globex.pk).exists()
    assert last_audit("tenant.delete").target_id == str(globex.pk)
