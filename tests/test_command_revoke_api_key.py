from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from audit.models import AuditLog
from keys.models import ApiKey
from keys.services import api_key_create


def run(*args):
    out = StringIO()
    call_command("revoke_api_key", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def assert_fails(*args, match):
    before = (list(ApiKey.objects.values_list("pk", "revoked_at")), AuditLog.objects.count())
    with pytest.raises(CommandError, match=match) as failure:
        run(*args)
    assert failure.value.returncode != 0
    assert "\n" not in str(failure.value)
    assert (list(ApiKey.objects.values_list("pk", "revoked_at")), AuditLog.objects.count()) == before


@pytest.fixture
def api_key(acme):
    return api_key_create(tenant=acme, name="ci")[0]


@pytest.mark.django_db
def test_it_revokes_the_key_and_audits_it(api_key):
    before = timezone.now()

    output = run(api_key.prefix)

    assert output == f"revoked API key {api_key.prefix}\n"
    api_key.refresh_from_db()
    assert before <= api_key.revoked_at <= timezone.now()
    assert not ApiKey.objects.usable().filter(pk=api_key.pk).exists()
    audit = AuditLog.objects.get(action="api_key.revoke")
    assert (audit.actor_label, audit.target_id, audit.tenant) == ("command", str(api_key.pk), api_key.tenant)


@pytest.mark.django_db
def test_it_revokes_only_that_key(api_key, acme):
    other, _ = api_key_create(tenant=acme, name="other")

    run(api_key.prefix)

    other.refresh_from_db()
    assert other.revoked_at is None


@pytest.mark.django_db
def test_revoking_again_says_so_exits_0_and_changes_nothing(api_key):
    run(api_key.prefix)
    api_key.refresh_from_db()
    revoked_at = api_key.revoked_at

    output = run(api_key.prefix)

    assert output == f"API key {api_key.prefix} was already revoked at {revoked_at.isoformat()}\n"
    api_key.refresh_from_db()
    assert api_key.revoked_at == revoked_at
    assert AuditLog.objects.filter(action="api_key.revoke").count() == 1


@pytest.mark.django_db
def test_it_rejects_an_unknown_prefix(api_key):
    assert_fails("lp-ZZZZZZZZ", match="unknown API key lp-ZZZZZZZZ")


@pytest.mark.parametrize("prefix", ["lp-abc", "lp_AAAAAAAA", "AAAAAAAA"])
@pytest.mark.django_db
def test_it_rejects_a_malformed_prefix(api_key, prefix):
    assert_fails(prefix, match="malformed key prefix")


@pytest.mark.django_db
def test_it_requires_a_prefix(api_key):
    assert_fails(match="required: prefix")
