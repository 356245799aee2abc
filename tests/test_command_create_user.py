from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditLog
from tenants.models import User

PASSWORD = "correct-horse-battery-9"


def run(*args):
    out = StringIO()
    call_command("create_user", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def assert_fails(*args, match):
    before = (User.objects.count(), AuditLog.objects.count())
    with pytest.raises(CommandError, match=match) as failure:
        run(*args)
    assert failure.value.returncode != 0
    assert "\n" not in str(failure.value)
    assert (User.objects.count(), AuditLog.objects.count()) == before


def admin_login(client, username, password):
    """True when the admin site's own login form lets the user in."""
    response = client.post("/admin/login/?next=/admin/", {"username": username, "password": password})
    return response.status_code == 302 and response.url == "/admin/"


@pytest.fixture
def password_env(monkeypatch):
    monkeypatch.setenv("LLMPROXY_TEST_NEW_PASSWORD", PASSWORD)
    return "LLMPROXY_TEST_NEW_PASSWORD"


@pytest.mark.django_db
def test_a_platform_admin_with_a_password_can_log_into_the_admin(client, password_env):
    output = run("root", "--role", "admin", "--password-env", password_env)

    assert output == "created admin root\n"
    user = User.objects.get(username="root")
    assert (user.role, user.tenant, user.is_platform_admin) == ("admin", None, True)
    assert admin_login(client, "root", PASSWORD)


@pytest.mark.django_db
def test_a_tenant_admin_with_a_password_can_log_into_the_admin(client, acme, password_env):
    output = run("alice2", "--role", "tenant_admin", "--tenant", "acme", "--password-env", password_env)

    assert output == "created tenant_admin alice2 in tenant acme\n"
    user = User.objects.get(username="alice2")
    assert (user.role, user.tenant, user.is_platform_admin) == ("tenant_admin", acme, False)
    assert admin_login(client, "alice2", PASSWORD)


@pytest.mark.django_db
def test_a_plain_user_never_logs_into_the_admin(client, acme, password_env):
    run("bob2", "--role", "user", "--tenant", "acme", "--password-env", password_env)

    user = User.objects.get(username="bob2")
    assert user.check_password(PASSWORD)
    assert not admin_login(client, "bob2", PASSWORD)


@pytest.mark.django_db
def test_without_a_password_the_account_cannot_log_in(client, acme):
    run("carol", "--role", "tenant_admin", "--tenant", "acme")

    assert not User.objects.get(username="carol").has_usable_password()


@pytest.mark.django_db
def test_it_audits_the_creation_without_the_password(acme, password_env):
    run("dave", "--role", "user", "--tenant", "acme", "--password-env", password_env)

    audit = AuditLog.objects.get(action="user.create")
    assert (audit.actor_label, audit.tenant, audit.target_id) == (
        "command",
        acme,
        str(User.objects.get(username="dave").pk),
    )
    assert audit.metadata == {"role": "user", "password_set": True}
    assert PASSWORD not in str(audit.metadata)


@pytest.mark.parametrize("role", ["tenant_admin", "user"])
@pytest.mark.django_db
def test_a_tenant_is_required_unless_the_role_is_admin(role):
    assert_fails("erin", "--role", role, match=f"--tenant is required for the role {role}")


@pytest.mark.django_db
def test_a_platform_admin_belongs_to_no_tenant(acme):
    assert_fails("root", "--role", "admin", "--tenant", "acme", match="belongs to no tenant")


@pytest.mark.django_db
def test_it_rejects_an_unknown_tenant():
    assert_fails("erin", "--role", "user", "--tenant", "nope", match="unknown tenant 'nope'")


@pytest.mark.django_db
def test_it_rejects_an_unknown_role(acme):
    assert_fails("erin", "--role", "owner", "--tenant", "acme", match="invalid choice: 'owner'")


@pytest.mark.django_db
def test_it_rejects_a_duplicate_username(acme_user, globex):
    assert_fails("bob", "--role", "user", "--tenant", "globex", match="user 'bob' already exists")


@pytest.mark.django_db
def test_it_rejects_a_malformed_username(acme):
    assert_fails("bob smith", "--role", "user", "--tenant", "acme", match="Enter a valid username")


@pytest.mark.django_db
def test_it_rejects_a_missing_password_variable(acme, monkeypatch):
    monkeypatch.delenv("LLMPROXY_TEST_UNSET_PASSWORD", raising=False)

    assert_fails(
        "erin",
        "--role",
        "user",
        "--tenant",
        "acme",
        "--password-env",
        "LLMPROXY_TEST_UNSET_PASSWORD",
        match="LLMPROXY_TEST_UNSET_PASSWORD is not set or empty",
    )


@pytest.mark.django_db
def test_it_rejects_an_empty_password_variable(acme, monkeypatch):
    monkeypatch.setenv("LLMPROXY_TEST_EMPTY_PASSWORD", "")

    assert_fails(
        "erin",
        "--role",
        "user",
        "--tenant",
        "acme",
        "--password-env",
        "LLMPROXY_TEST_EMPTY_PASSWORD",
        match="is not set or empty",
    )


@pytest.mark.django_db
def test_it_rejects_a_weak_password(acme, monkeypatch):
    monkeypatch.setenv("LLMPROXY_TEST_WEAK_PASSWORD", "12345")

    assert_fails(
        "erin",
        "--role",
        "user",
        "--tenant",
        "acme",
        "--password-env",
        "LLMPROXY_TEST_WEAK_PASSWORD",
        match="too short",
    )


@pytest.mark.django_db
def test_it_rejects_a_malformed_variable_name(acme):
    assert_fails(
        "erin",
        "--role",
        "user",
        "--tenant",
        "acme",
        "--password-env",
        "MY-PASSWORD",
        match="not an environment variable name",
    )
