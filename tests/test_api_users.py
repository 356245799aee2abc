import pytest

from tenants.models import User
from tests.api_support import API, error_of, ids, last_audit

pytest_plugins = ["tests.api_fixtures"]


@pytest.mark.django_db
def test_who_sees_which_users(platform, alice, charlie, platform_admin, acme_admin, acme_user, globex_admin):
    assert ids(platform.get(f"{API}/users/")) == sorted(
        [platform_admin.pk, acme_admin.pk, acme_user.pk, globex_admin.pk]
    )
    # A tenant admin never sees platform admins, nor another tenant's people.
    assert ids(alice.get(f"{API}/users/")) == [acme_admin.pk, acme_user.pk]
    assert ids(charlie.get(f"{API}/users/")) == [globex_admin.pk]


@pytest.mark.django_db
def test_a_user_reaches_only_their_own_record(bob, acme_user, acme_admin):
    assert bob.get(f"{API}/me").json()["id"] == acme_user.pk
    assert bob.get(f"{API}/users/").status_code == 403
    assert bob.get(f"{API}/users/{acme_user.pk}/").status_code == 403
    assert bob.patch(f"{API}/users/{acme_admin.pk}/", {"email": "x@example.com"}).status_code == 403


@pytest.mark.django_db
def test_the_outsider_cannot_read_change_or_delete_another_tenants_user(charlie, acme_user):
    assert charlie.get(f"{API}/users/{acme_user.pk}/").status_code == 404
    assert charlie.patch(f"{API}/users/{acme_user.pk}/", {"is_active": False}).status_code == 404
    assert charlie.delete(f"{API}/users/{acme_user.pk}/").status_code == 404
    acme_user.refresh_from_db()
    assert acme_user.is_active


@pytest.mark.django_db
def test_a_tenant_admin_cannot_see_or_touch_a_platform_admin(alice, platform_admin):
    assert alice.get(f"{API}/users/{platform_admin.pk}/").status_code == 404
    assert alice.patch(f"{API}/users/{platform_admin.pk}/", {"email": "x@example.com"}).status_code == 404


@pytest.mark.django_db
def test_a_tenant_admin_creates_a_user_in_their_tenant_with_the_password_never_audited(
    alice, acme, acme_admin
):
    response = alice.post(
        f"{API}/users/", {"username": "dave", "role": "user", "password": "a-Long-pass-123"}
    )

    assert response.status_code == 201
    dave = User.objects.get(username="dave")
    assert (dave.tenant, dave.role, dave.check_password("a-Long-pass-123")) == (acme, "user", True)
    assert "password" not in response.json()
    audit = last_audit("user.create")
    assert (audit.actor, audit.tenant) == (acme_admin, acme)
    assert audit.metadata["changed"]["password"] == ["[REDACTED]", "[REDACTED]"]
    assert "a-Long-pass-123" not in str(audit.metadata) and dave.password not in str(audit.metadata)


@pytest.mark.django_db
def test_a_tenant_admin_cannot_place_a_user_in_another_tenant(alice, globex):
    response = alice.post(f"{API}/users/", {"username": "mole", "role": "user", "tenant": globex.pk})

    assert response.status_code == 400 and "tenant" in error_of(response)["fields"]
    assert not User.objects.filter(username="mole").exists()


@pytest.mark.django_db
def test_a_tenant_admin_cannot_make_platform_admins(alice, acme_user):
    assert alice.post(f"{API}/users/", {"username": "eve", "role": "admin"}).status_code == 403
    assert alice.patch(f"{API}/users/{acme_user.pk}/", {"role": "admin"}).status_code == 403
    acme_user.refresh_from_db()
    assert acme_user.role == "user"


@pytest.mark.django_db
def test_a_tenant_admin_cannot_promote_demote_or_lock_out_themselves(alice, acme_admin):
    assert alice.patch(f"{API}/users/{acme_admin.pk}/", {"role": "user"}).status_code == 403
    assert alice.patch(f"{API}/users/{acme_admin.pk}/", {"is_active": False}).status_code == 403
    assert alice.delete(f"{API}/users/{acme_admin.pk}/").status_code == 403
    assert alice.patch(f"{API}/users/{acme_admin.pk}/", {"email": "alice@example.com"}).status_code == 200


@pytest.mark.django_db
def test_a_weak_password_is_refused(alice):
    response = alice.post(f"{API}/users/", {"username": "frank", "role": "user", "password": "123"})

    assert response.status_code == 400 and "password" in str(error_of(response)["fields"])


@pytest.mark.django_db
def test_a_platform_admin_makes_a_platform_admin_only_without_a_tenant(platform, acme):
    with_tenant = platform.post(f"{API}/users/", {"username": "ops", "role": "admin", "tenant": acme.pk})
    assert with_tenant.status_code == 400

    response = platform.post(f"{API}/users/", {"username": "ops", "role": "admin"})
    assert response.status_code == 201
    assert User.objects.get(username="ops").is_platform_admin


@pytest.mark.django_db
def test_a_tenant_admin_changes_and_deletes_their_users_and_it_is_audited(alice, acme_user):
    response = alice.patch(
        f"{API}/users/{acme_user.pk}/", {"email": "bob@example.com", "password": "n3w-Passw0rd!"}
    )
    assert response.status_code == 200
    changed = last_audit("user.update").metadata["changed"]
    assert changed == {"email": ["", "bob@example.com"], "password": ["[REDACTED]", "[REDACTED]"]}

    assert alice.delete(f"{API}/users/{acme_user.pk}/").status_code == 204
    assert not User.objects.filter(pk=acme_user.pk).exists()
    assert last_audit("user.delete").target_id == str(acme_user.pk)
