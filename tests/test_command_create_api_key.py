from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from audit.models import AuditLog
from keys import secrets
from keys.models import ApiKey


def run(*args):
    out = StringIO()
    call_command("create_api_key", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def assert_fails(*args, match):
    before = (ApiKey.objects.count(), AuditLog.objects.count())
    with pytest.raises(CommandError, match=match) as failure:
        run(*args)
    assert failure.value.returncode != 0
    assert "\n" not in str(failure.value)
    assert (ApiKey.objects.count(), AuditLog.objects.count()) == before


@pytest.mark.django_db
def test_it_prints_the_prefix_then_the_whole_key_alone_on_the_last_line(acme):
    lines = run("--tenant", "acme").splitlines()

    assert lines[0].startswith("prefix: ")
    prefix = lines[0].removeprefix("prefix: ")
    assert secrets.PREFIX_RE.match(prefix)
    key = lines[-1]
    assert secrets.split(key) == (prefix, key.removeprefix(prefix + "-"))
    assert len(key.removeprefix(prefix + "-")) >= 32


@pytest.mark.django_db
def test_the_printed_key_matches_the_stored_digest_and_is_not_stored_in_clear(acme):
    key = run("--tenant", "acme").splitlines()[-1]

    api_key = ApiKey.objects.get()
    assert key.startswith(api_key.prefix + "-")
    assert secrets.digest_matches(key, api_key.digest)
    assert key not in (api_key.digest, api_key.previous_digest, api_key.name)


@pytest.mark.django_db
def test_two_keys_differ(acme):
    first, second = run("--tenant", "acme").splitlines()[-1], run("--tenant", "acme").splitlines()[-1]

    assert first != second
    assert first[:11] != second[:11]


@pytest.mark.django_db
def test_it_records_name_models_expiry_and_owner(acme, acme_user):
    before = timezone.now()
    run(
        "--tenant",
        "acme",
        "--name",
        "ci",
        "--models",
        "gpt-4o, demo-model,gpt-4o",
        "--expires-in",
        "30d",
        "--user",
        "bob",
    )

    api_key = ApiKey.objects.get()
    assert (api_key.tenant, api_key.name, api_key.user) == (acme, "ci", acme_user)
    assert api_key.allowed_models == ["gpt-4o", "demo-model"]
    assert before + timedelta(days=30) <= api_key.expires_at <= timezone.now() + timedelta(days=30)


@pytest.mark.django_db
def test_by_default_a_key_allows_every_model_and_never_expires(acme):
    run("--tenant", "acme")

    api_key = ApiKey.objects.get()
    assert (api_key.allowed_models, api_key.expires_at, api_key.user) == ([], None, None)


@pytest.mark.django_db
def test_it_audits_the_creation(acme):
    run("--tenant", "acme", "--name", "ci")

    audit = AuditLog.objects.get(action="api_key.create")
    assert (audit.actor_label, audit.tenant, audit.target_id) == (
        "command",
        acme,
        str(ApiKey.objects.get().pk),
    )


@pytest.mark.django_db
def test_it_requires_a_tenant(acme):
    assert_fails(match="required: --tenant")


@pytest.mark.django_db
def test_it_rejects_an_unknown_tenant(acme):
    assert_fails("--tenant", "nope", match="unknown tenant 'nope'")


@pytest.mark.parametrize(
    ("duration", "error"),
    [
        ("30", "invalid duration"),
        ("5x", "invalid duration"),
        ("-1d", "invalid duration"),
        ("0s", "must be more than 0"),
    ],
)
@pytest.mark.django_db
def test_it_rejects_a_bad_duration(acme, duration, error):
    assert_fails("--tenant", "acme", f"--expires-in={duration}", match=error)


@pytest.mark.django_db
def test_it_rejects_an_owner_from_another_tenant(acme, globex_admin):
    assert_fails("--tenant", "acme", "--user", "charlie", match="unknown user 'charlie' in tenant acme")


@pytest.mark.django_db
def test_it_rejects_an_unknown_owner(acme):
    assert_fails("--tenant", "acme", "--user", "nobody", match="unknown user 'nobody'")


@pytest.mark.django_db
def test_it_rejects_an_empty_model_list(acme):
    assert_fails("--tenant", "acme", "--models", " , ", match="--models needs at least one model name")


@pytest.mark.django_db
def test_it_rejects_a_name_too_long(acme):
    assert_fails("--tenant", "acme", "--name", "x" * 201, match="at most 200 characters")


@pytest.mark.django_db
def test_call_command_keyword_options_mean_what_the_flags_mean(acme):
    call_command(
        "create_api_key", tenant="acme", models="a,b", expires_in="1h", stdout=StringIO(), stderr=StringIO()
    )

    api_key = ApiKey.objects.get()
    assert api_key.allowed_models == ["a", "b"]
    assert api_key.expires_at <= timezone.now() + timedelta(hours=1)
