"""API keys in the admin: issued once, stored as a digest, revoked and rotated with an audit trail."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditLog
from keys import secrets
from keys.models import ApiKey
from keys.services import api_key_create

KEY_IN_PAGE = re.compile(r'class="plain-key"[^>]*>(lp-[A-Za-z0-9]{8}-[A-Za-z0-9]+)<')
ADD_URL = reverse("admin:keys_apikey_add")
CHANGELIST_URL = reverse("admin:keys_apikey_changelist")


def _client(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice(acme_admin):
    return _client(acme_admin)


@pytest.fixture
def root(platform_admin):
    return _client(platform_admin)


def _add(client, **fields):
    payload = {
        "name": "ci",
        "user": "",
        "allowed_models": "",
        "expires_at_0": "",
        "expires_at_1": "",
        **fields,
    }
    return client.post(ADD_URL, payload)


def _plain_keys(response):
    return KEY_IN_PAGE.findall(response.content.decode())


def _every_page_of(client, api_key):
    return [
        client.get(CHANGELIST_URL).content.decode(),
        client.get(reverse("admin:keys_apikey_change", args=[api_key.pk])).content.decode(),
        client.get(reverse("admin:keys_apikey_history", args=[api_key.pk])).content.decode(),
        client.get(reverse("admin:audit_auditlog_changelist")).content.decode(),
    ]


def test_creating_a_key_shows_the_plain_key_once_and_stores_only_its_digest(alice, acme, acme_user):
    response = _add(alice, name="ci", user=acme_user.pk, allowed_models="gpt-4o, claude-3, gpt-4o")

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    [plain] = _plain_keys(response)
    prefix, secret = secrets.split(plain)
    api_key = ApiKey.objects.get(prefix=prefix)
    assert (api_key.tenant, api_key.user, api_key.name) == (acme, acme_user, "ci")
    assert api_key.allowed_models == ["gpt-4o", "claude-3"]
    assert secrets.digest_matches(plain, api_key.digest)
    stored = [str(value) for value in ApiKey.objects.filter(pk=api_key.pk).values().get().values()]
    assert not any(secret in value for value in stored)

    for page in _every_page_of(alice, api_key):
        assert plain not in page and secret not in page
        assert api_key.digest not in page
    assert plain not in str(dict(alice.session.items()))
    assert all(plain not in cookie.value for cookie in alice.cookies.values())


def test_the_change_form_shows_the_prefix_but_never_the_digest(alice, acme):
    api_key, plain = api_key_create(tenant=acme, name="old")
    api_key.previous_digest = secrets.digest("lp-AAAAAAAA-" + "x" * 40)
    api_key.save()
    page = alice.get(reverse("admin:keys_apikey_change", args=[api_key.pk])).content.decode()
    assert api_key.prefix in page
    assert api_key.digest not in page and api_key.previous_digest not in page
    assert 'name="digest"' not in page


def test_a_tenant_admins_key_belongs_to_their_tenant_whatever_is_posted(alice, acme, globex):
    response = _add(alice, tenant=globex.pk)
    [plain] = _plain_keys(response)
    assert ApiKey.objects.get(prefix=secrets.split(plain)[0]).tenant == acme


def test_a_platform_admin_chooses_the_tenant_and_a_user_of_that_tenant(root, acme, globex, acme_user):
    response = _add(root, tenant=globex.pk, user=acme_user.pk)
    assert response.status_code == 200
    assert "user" in response.context["adminform"].form.errors
    assert not ApiKey.objects.exists()

    [plain] = _plain_keys(_add(root, tenant=globex.pk))
    assert ApiKey.objects.get(prefix=secrets.split(plain)[0]).tenant == globex


def test_creating_a_key_is_audited_with_the_admin_as_actor(alice, acme_admin, acme):
    [plain] = _plain_keys(_add(alice, name="audited"))
    row = AuditLog.objects.get(action="api_key.create")
    assert (row.actor, row.tenant, row.target_id) == (
        acme_admin,
        acme,
        str(ApiKey.objects.get(prefix=secrets.split(plain)[0]).pk),
    )
    assert plain not in str(row.metadata)


def test_editing_and_deleting_a_key_are_audited(alice, acme_admin, acme):
    api_key, _ = api_key_create(tenant=acme, name="before")
    url = reverse("admin:keys_apikey_change", args=[api_key.pk])
    response = alice.post(
        url, {"name": "after", "user": "", "allowed_models": "", "expires_at_0": "", "expires_at_1": ""}
    )
    assert response.status_code == 302
    update = AuditLog.objects.get(action="api_key.update")
    assert (update.actor, update.metadata) == (acme_admin, {"changed": ["name"]})

    alice.post(reverse("admin:keys_apikey_delete", args=[api_key.pk]), {"post": "yes"})
    assert not ApiKey.objects.filter(pk=api_key.pk).exists()
    assert AuditLog.objects.get(action="api_key.delete").target_id == str(api_key.pk)


def _act(client, action, *keys):
    return client.post(CHANGELIST_URL, {"action": action, "_selected_action": [k.pk for k in keys]})


def test_the_revoke_action_revokes_the_selected_keys_and_audits_it(alice, acme_admin, acme):
    first, _ = api_key_create(tenant=acme, name="one")
    second, _ = api_key_create(tenant=acme, name="two")
    kept, _ = api_key_create(tenant=acme, name="kept")

    response = _act(alice, "revoke_keys", first, second)
    assert response.status_code == 302
    for api_key in (first, second, kept):
        api_key.refresh_from_db()
    assert first.revoked_at is not None and second.revoked_at is not None
    assert kept.revoked_at is None
    rows = AuditLog.objects.filter(action="api_key.revoke")
    assert {(row.actor_id, row.target_id) for row in rows} == {
        (acme_admin.pk, str(first.pk)),
        (acme_admin.pk, str(second.pk)),
    }


def test_an_outsider_cannot_revoke_or_rotate_another_tenants_key(acme, globex_admin):
    api_key, _ = api_key_create(tenant=acme, name="acme")
    charlie = _client(globex_admin)
    _act(charlie, "revoke_keys", api_key)
    response = _act(charlie, "rotate_keys", api_key)
    assert _plain_keys(response) == []
    before = api_key.digest
    api_key.refresh_from_db()
    assert (api_key.revoked_at, api_key.digest) == (None, before)


def test_the_rotate_action_shows_the_new_key_once_and_keeps_the_old_one_for_a_day(alice, acme_admin, acme):
    api_key, old_plain = api_key_create(tenant=acme, name="rotating")

    response = _act(alice, "rotate_keys", api_key)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    [new_plain] = _plain_keys(response)
    assert new_plain != old_plain and secrets.split(new_plain)[0] == api_key.prefix

    api_key.refresh_from_db()
    assert secrets.digest_matches(new_plain, api_key.digest)
    assert secrets.digest_matches(old_plain, api_key.previous_digest)
    expected = timezone.now() + timedelta(hours=24)
    assert abs(api_key.previous_valid_until - expected) < timedelta(minutes=1)
    assert AuditLog.objects.get(action="api_key.rotate").actor == acme_admin

    for page in _every_page_of(alice, api_key):
        assert new_plain not in page


def test_a_revoked_key_is_not_rotated(alice, acme):
    api_key, _ = api_key_create(tenant=acme, name="gone")
    _act(alice, "revoke_keys", api_key)
    response = _act(alice, "rotate_keys", api_key)
    assert response.status_code == 302
    api_key.refresh_from_db()
    assert api_key.rotated_at is None
