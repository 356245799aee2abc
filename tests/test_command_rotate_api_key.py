from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from audit.models import AuditLog
from keys import secrets
from keys.models import ApiKey
from keys.services import api_key_create


def run(*args):
    out = StringIO()
    call_command("rotate_api_key", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def key_state():
    return [
        (k.pk, k.digest, k.previous_digest, k.previous_valid_until, k.rotated_at)
        for k in ApiKey.objects.all()
    ]


def assert_fails(*args, match):
    before = (key_state(), AuditLog.objects.count())
    with pytest.raises(CommandError, match=match) as failure:
        run(*args)
    assert failure.value.returncode != 0
    assert "\n" not in str(failure.value)
    assert (key_state(), AuditLog.objects.count()) == before


@pytest.fixture
def created(acme):
    """(api_key, plain key) of a fresh acme key."""
    return api_key_create(tenant=acme, name="ci")


@pytest.mark.django_db
def test_it_prints_the_same_prefix_then_the_new_key_alone_on_the_last_line(created):
    api_key, old = created

    lines = run(api_key.prefix).splitlines()

    assert lines[0] == f"prefix: {api_key.prefix}"
    new = lines[-1]
    assert secrets.split(new)[0] == api_key.prefix
    assert new != old


@pytest.mark.django_db
def test_both_secrets_match_during_the_default_24h_grace(created):
    api_key, old = created
    before = timezone.now()

    new = run(api_key.prefix).splitlines()[-1]

    api_key.refresh_from_db()
    assert secrets.digest_matches(new, api_key.digest)
    assert not secrets.digest_matches(old, api_key.digest)
    assert secrets.digest_matches(old, api_key.previous_digest)
    assert (
        before + timedelta(hours=24) <= api_key.previous_valid_until <= timezone.now() + timedelta(hours=24)
    )


@pytest.mark.django_db
def test_the_grace_period_can_be_chosen(created):
    api_key, old = created
    before = timezone.now()

    run(api_key.prefix, "--grace", "15m")

    api_key.refresh_from_db()
    assert secrets.digest_matches(old, api_key.previous_digest)
    assert (
        before + timedelta(minutes=15)
        <= api_key.previous_valid_until
        <= timezone.now() + timedelta(minutes=15)
    )


@pytest.mark.django_db
def test_a_grace_of_0s_ends_the_old_secret_at_once(created):
    api_key, old = created

    new = run(api_key.prefix, "--grace", "0s").splitlines()[-1]

    api_key.refresh_from_db()
    assert secrets.digest_matches(new, api_key.digest)
    assert not secrets.digest_matches(old, api_key.previous_digest)
    assert api_key.previous_valid_until is None


@pytest.mark.django_db
def test_it_keeps_the_keys_identity_and_settings(acme, acme_user):
    api_key, _ = api_key_create(
        tenant=acme,
        name="ci",
        allowed_models=["gpt-4o"],
        user=acme_user,
        expires_at=timezone.now() + timedelta(days=7),
    )
    settings_of = (
        "pk",
        "prefix",
        "tenant_id",
        "name",
        "allowed_models",
        "expires_at",
        "user_id",
        "revoked_at",
    )
    before = [getattr(api_key, field) for field in settings_of]

    run(api_key.prefix)

    api_key.refresh_from_db()
    assert [getattr(api_key, field) for field in settings_of] == before
    assert api_key.rotated_at is not None
    assert ApiKey.objects.count() == 1


@pytest.mark.django_db
def test_it_audits_the_rotation(created):
    api_key, _ = created

    run(api_key.prefix, "--grace", "1h")

    audit = AuditLog.objects.get(action="api_key.rotate")
    assert (audit.actor_label, audit.target_id, audit.tenant) == ("command", str(api_key.pk), api_key.tenant)
    assert audit.metadata == {"grace_seconds": 3600}


@pytest.mark.django_db
def test_it_rejects_an_unknown_prefix(created):
    assert_fails("lp-AAAAAAAA", match="unknown API key lp-AAAAAAAA")


@pytest.mark.parametrize("prefix", ["lp-short", "AAAAAAAA", "lp-AAAA-AAA", "sk-AAAAAAAA"])
@pytest.mark.django_db
def test_it_rejects_a_malformed_prefix(created, prefix):
    assert_fails(prefix, match="malformed key prefix")


@pytest.mark.django_db
def test_it_refuses_a_whole_key_without_echoing_it(created):
    _, plain = created

    with pytest.raises(CommandError) as failure:
        run(plain)

    assert "not the whole key" in str(failure.value)
    assert plain not in str(failure.value)


@pytest.mark.parametrize("grace", ["24", "1y", "soon"])
@pytest.mark.django_db
def test_it_rejects_a_bad_grace(created, grace):
    assert_fails(created[0].prefix, "--grace", grace, match="invalid duration")


@pytest.mark.django_db
def test_it_refuses_a_revoked_key(created):
    api_key, _ = created
    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())

    assert_fails(api_key.prefix, match="is revoked")


@pytest.mark.django_db
def test_it_refuses_an_expired_key(created):
    api_key, _ = created
    ApiKey.objects.filter(pk=api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert_fails(api_key.prefix, match="has expired")


@pytest.mark.django_db
def test_call_command_keyword_options_mean_what_the_flags_mean(created):
    api_key, old = created
    before = timezone.now()

    call_command("rotate_api_key", api_key.prefix, grace="15m", stdout=StringIO(), stderr=StringIO())

    api_key.refresh_from_db()
    assert (
        before + timedelta(minutes=15)
        <= api_key.previous_valid_until
        <= timezone.now() + timedelta(minutes=15)
    )
    with pytest.raises(CommandError, match="invalid duration"):
        call_command("rotate_api_key", api_key.prefix, grace="soon", stdout=StringIO(), stderr=StringIO())
