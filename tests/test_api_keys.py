import time
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from keys import lookup, secrets
from keys.models import ApiKey
from keys.services import api_key_create, api_key_revoke
from tests.api_support import API, error_of, ids, last_audit

pytest_plugins = ["tests.api_fixtures"]


@pytest.mark.django_db
def test_who_sees_which_keys(platform, alice, bob, charlie, acme, acme_admin, acme_world, globex_world):
    admins_key, _ = api_key_create(tenant=acme, name="alice's", user=acme_admin)
    bobs = acme_world["api_key"]

    assert ids(platform.get(f"{API}/keys/")) == sorted([bobs.pk, admins_key.pk, globex_world["api_key"].pk])
    assert ids(alice.get(f"{API}/keys/")) == sorted([bobs.pk, admins_key.pk])
    # A user sees only their own keys.
    assert ids(bob.get(f"{API}/keys/")) == [bobs.pk]
    assert bob.get(f"{API}/keys/{admins_key.pk}/").status_code == 404
    assert ids(charlie.get(f"{API}/keys/")) == [globex_world["api_key"].pk]


@pytest.mark.django_db
def test_no_answer_ever_contains_a_digest_or_a_stored_secret(platform, acme_world):
    key = acme_world["api_key"]

    body = platform.get(f"{API}/keys/{key.pk}/").content.decode()

    assert key.digest not in body and "digest" not in body
    assert acme_world["plain_key"] not in body


@pytest.mark.django_db
def test_the_outsider_cannot_read_change_rotate_or_revoke_another_tenants_key(charlie, acme_world):
    key = acme_world["api_key"]
    for response in (
        charlie.get(f"{API}/keys/{key.pk}/"),
        charlie.patch(f"{API}/keys/{key.pk}/", {"name": "pwned"}),
        charlie.post(f"{API}/keys/{key.pk}/rotate", {}),
        charlie.post(f"{API}/keys/{key.pk}/revoke"),
    ):
        assert response.status_code == 404
    fresh = ApiKey.objects.get(pk=key.pk)
    assert (fresh.name, fresh.digest, fresh.revoked_at) == (key.name, key.digest, None)


@pytest.mark.django_db
def test_creating_a_key_returns_the_whole_key_once(alice, acme, acme_user, acme_admin):
    expires = (timezone.now() + timedelta(days=30)).isoformat()
    response = alice.post(
        f"{API}/keys/",
        {"name": "ci", "user": acme_user.pk, "allowed_models": ["gpt-4o"], "expires_at": expires},
    )

    assert response.status_code == 201
    body = response.json()
    api_key = ApiKey.objects.get(pk=body["id"])
    assert (api_key.tenant, api_key.user, api_key.allowed_models) == (acme, acme_user, ["gpt-4o"])
    assert secrets.split(body["key"])[0] == body["prefix"] == api_key.prefix
    assert secrets.digest_matches(body["key"], api_key.digest)
    assert "key" not in alice.get(f"{API}/keys/{api_key.pk}/").json()
    audit = last_audit("api_key.create")
    assert (audit.actor, audit.tenant, audit.ip) == (acme_admin, acme, "203.0.113.5")


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["tenant", "user"])
def test_a_tenant_admin_cannot_name_another_tenants_tenant_or_user(alice, globex, globex_admin, field):
    payload = {"tenant": globex.pk} if field == "tenant" else {"user": globex_admin.pk}

    response = alice.post(f"{API}/keys/", {"name": "sneaky", **payload})

    assert response.status_code == 400 and field in error_of(response)["fields"]
    assert not ApiKey.objects.filter(name="sneaky").exists()


@pytest.mark.django_db
def test_a_platform_admin_cannot_give_a_key_to_a_user_of_another_tenant(platform, acme, globex_admin):
    response = platform.post(f"{API}/keys/", {"tenant": acme.pk, "user": globex_admin.pk})

    assert response.status_code == 400 and "user" in error_of(response)["fields"]


@pytest.mark.django_db
def test_a_key_cannot_be_created_already_expired(alice):
    response = alice.post(f"{API}/keys/", {"expires_at": (timezone.now() - timedelta(hours=1)).isoformat()})

    assert response.status_code == 400 and "expires_at" in error_of(response)["fields"]


@pytest.mark.django_db
def test_a_user_cannot_create_or_edit_keys(bob, acme_world):
    assert bob.post(f"{API}/keys/", {"name": "mine"}).status_code == 403
    assert bob.patch(f"{API}/keys/{acme_world['api_key'].pk}/", {"name": "x"}).status_code == 403


@pytest.mark.django_db
def test_a_tenant_admin_edits_a_key_and_the_change_is_audited(alice, acme_world):
    key = acme_world["api_key"]

    response = alice.patch(f"{API}/keys/{key.pk}/", {"name": "renamed", "allowed_models": ["a", "b"]})

    assert response.status_code == 200
    assert last_audit("api_key.update").metadata["changed"] == {
        "name": ["acme-key", "renamed"],
        "allowed_models": [[], ["a", "b"]],
    }


@pytest.mark.django_db
def test_a_user_revokes_their_own_key(bob, acme_world, acme_user):
    key = acme_world["api_key"]

    response = bob.post(f"{API}/keys/{key.pk}/revoke")

    assert response.status_code == 200 and response.json()["status"] == "revoked"
    assert last_audit("api_key.revoke").actor == acme_user
    # Again: nothing changes, same answer.
    assert bob.post(f"{API}/keys/{key.pk}/revoke").json()["revoked_at"] == response.json()["revoked_at"]


@pytest.mark.django_db
def test_a_user_rotates_their_own_key_and_gets_the_new_secret_once(bob, acme_world):
    key = acme_world["api_key"]

    response = bob.post(f"{API}/keys/{key.pk}/rotate", {"grace": "1h"})

    assert response.status_code == 200
    body = response.json()
    assert body["prefix"] == key.prefix and body["key"] != acme_world["plain_key"]
    key.refresh_from_db()
    assert secrets.digest_matches(body["key"], key.digest)
    assert secrets.digest_matches(acme_world["plain_key"], key.previous_digest)
    assert last_audit("api_key.rotate").metadata["grace_seconds"] == 3600


@pytest.mark.django_db
def test_a_revoked_key_cannot_be_rotated(alice, acme_world):
    api_key_revoke(api_key=acme_world["api_key"])

    response = alice.post(f"{API}/keys/{acme_world['api_key'].pk}/rotate", {})

    assert response.status_code == 409


@pytest.mark.django_db
@pytest.mark.parametrize("grace", ["soon", "366d", ""])
def test_a_bad_grace_is_refused(alice, acme_world, grace):
    response = alice.post(f"{API}/keys/{acme_world['api_key'].pk}/rotate", {"grace": grace})

    assert response.status_code == 400 and "grace" in error_of(response)["fields"]


@pytest.mark.django_db
def test_listing_by_status(alice, acme, acme_world):
    revoked, _ = api_key_create(tenant=acme, name="gone")
    api_key_revoke(api_key=revoked)

    assert ids(alice.get(f"{API}/keys/?status=revoked")) == [revoked.pk]
    assert ids(alice.get(f"{API}/keys/?status=active")) == [acme_world["api_key"].pk]
    assert alice.get(f"{API}/keys/?status=bogus").status_code == 400


class ShiftedClock:
    """keys.lookup's view of the time, moved forward; the monotonic clock is left alone."""

    def __init__(self, offset):
        self.offset = offset

    def time(self):
        return time.time() + self.offset

    def monotonic(self):
        return time.monotonic()


def authenticates(key):
    try:
        return async_to_sync(lookup.authenticate)(key).prefix
    except lookup.AuthFailure:
        return None


@pytest.mark.django_db(transaction=True)
def test_after_a_rotations_grace_the_old_secret_is_refused_and_the_new_one_accepted(
    alice, acme_world, monkeypatch
):
    key, old = acme_world["api_key"], acme_world["plain_key"]
    lookup.forget()
    assert authenticates(old) == key.prefix

    new = alice.post(f"{API}/keys/{key.pk}/rotate", {"grace": "1h"}).json()["key"]

    # During the grace both secrets work, up to its last second.
    assert authenticates(new) == key.prefix
    assert authenticates(old) == key.prefix
    monkeypatch.setattr(lookup, "time", ShiftedClock(3600 - 5))
    assert authenticates(old) == key.prefix
    # Past it, only the new one.
    monkeypatch.setattr(lookup, "time", ShiftedClock(3600 + 1))
    assert authenticates(old) is None
    assert authenticates(new) == key.prefix
    lookup.forget()
