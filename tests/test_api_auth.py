import uuid

import pytest
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditLog
from llmproxy.api.models import AccessToken
from tenants.models import User
from tests.api_support import API, error_of, last_audit

pytest_plugins = ["tests.api_fixtures"]


def fresh_client():
    # Each test logs in from its own address: the login throttle counts per address.
    return APIClient(REMOTE_ADDR=f"198.51.100.{uuid.uuid4().int % 250 + 1}")


def login(client, username, password):
    return client.post(f"{API}/auth/token", {"username": username, "password": password}, format="json")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fixture", "username", "password", "role"),
    [
        ("platform_admin", "root-admin", "pw-root-admin-123", "admin"),
        ("acme_admin", "alice", "pw-alice-123", "tenant_admin"),
        ("acme_user", "bob", "pw-bob-123", "user"),
    ],
)
def test_each_role_gets_a_token_for_its_password_and_uses_it(request, fixture, username, password, role):
    request.getfixturevalue(fixture)
    client = fresh_client()

    response = login(client, username, password)

    assert response.status_code == 201
    body = response.json()
    assert body["role"] == role and body["token"].startswith(body["prefix"] + "-")
    client.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    assert client.get(f"{API}/me").json()["username"] == username
    # Bearer works as well.
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    assert client.get(f"{API}/me").status_code == 200


@pytest.mark.django_db
def test_the_token_is_stored_as_a_digest_only(acme_admin):
    token = login(fresh_client(), "alice", "pw-alice-123").json()["token"]

    stored = AccessToken.objects.get()
    assert token.split("-")[-1] not in stored.digest and stored.prefix == token.rsplit("-", 1)[0]
    assert last_audit("api_token.create").actor == acme_admin


@pytest.mark.django_db
def test_a_wrong_password_is_refused_and_audited_as_a_security_event(acme_admin):
    response = login(fresh_client(), "alice", "wrong")

    assert response.status_code == 400
    assert error_of(response)["message"] == "Unknown username or wrong password."
    event = last_audit("security.api_login_failed")
    assert event.metadata == {"username": "alice"} and event.ip.startswith("198.51.100.")
    assert not AccessToken.objects.exists()


@pytest.mark.django_db
def test_logins_from_one_address_are_throttled(acme_admin):
    client = fresh_client()
    statuses = [login(client, "alice", "wrong").status_code for _ in range(11)]

    assert statuses == [400] * 10 + [429]
    assert "Retry-After" in login(client, "alice", "pw-alice-123").headers


@pytest.mark.django_db
def test_deleting_the_token_revokes_it(acme_admin):
    client = fresh_client()
    token = login(client, "alice", "pw-alice-123").json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    assert client.delete(f"{API}/auth/token").status_code == 204

    assert client.get(f"{API}/me").status_code == 401
    assert last_audit("api_token.revoke").actor == acme_admin


@pytest.mark.django_db
def test_a_deactivated_users_token_stops_working(acme_admin):
    client = fresh_client()
    client.credentials(HTTP_AUTHORIZATION=f"Token {login(client, 'alice', 'pw-alice-123').json()['token']}")
    User.objects.filter(pk=acme_admin.pk).update(is_active=False)

    assert client.get(f"{API}/me").status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header", [None, "Token nope", "Token lpt-AAAAAAAA-" + "x" * 40, "Token", "Basic Zm9vOmJhcg=="]
)
def test_requests_without_valid_credentials_get_401(acme_admin, header):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get(f"{API}/tenants/")

    assert response.status_code == 401
    assert error_of(response)["type"] == "authentication_error"


@pytest.mark.django_db
def test_the_admin_session_authenticates_too(acme_admin):
    client = Client()
    client.force_login(acme_admin)

    assert client.get(f"{API}/me").json()["username"] == "alice"


@pytest.mark.django_db
def test_a_user_without_a_password_cannot_log_in(acme):
    User.objects.create_user("nopw", role=User.Role.USER, tenant=acme)

    assert login(fresh_client(), "nopw", "anything").status_code == 400
    assert AuditLog.objects.filter(action="api_token.create").count() == 0
