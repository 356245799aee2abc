from io import StringIO

import pytest
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import CommandError

from audit.models import AuditLog
from tenants.models import Tenant


def run(*args):
    out = StringIO()
    call_command("create_tenant", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def assert_fails(*args, match):
    before = (Tenant.objects.count(), AuditLog.objects.count())
    with pytest.raises(CommandError, match=match) as failure:
        run(*args)
    assert failure.value.returncode != 0
    assert "\n" not in str(failure.value)
    assert (Tenant.objects.count(), AuditLog.objects.count()) == before


@pytest.mark.django_db
def test_it_creates_a_tenant_and_audits_it():
    output = run("acme-2", "--name", "Acme Two", "--cache-ttl", "300")

    assert output == "created tenant acme-2\n"
    tenant = Tenant.objects.get(slug="acme-2")
    assert (tenant.name, tenant.cache_ttl_seconds, tenant.is_active) == ("Acme Two", 300, True)
    audit = AuditLog.objects.get(action="tenant.create")
    assert (audit.actor_label, audit.tenant, audit.target_id) == ("command", tenant, str(tenant.pk))


@pytest.mark.django_db
def test_the_response_cache_is_off_unless_a_ttl_is_given():
    run("plain")

    assert Tenant.objects.get(slug="plain").cache_ttl_seconds == 0


@pytest.mark.parametrize("slug", ["Acme", "acme_corp", "acme-", "a.b", "ac me", "a" * 64, "émile"])
@pytest.mark.django_db
def test_it_rejects_a_malformed_slug(slug):
    assert_fails(slug, match="malformed slug")


@pytest.mark.django_db
def test_it_rejects_a_duplicate_slug(acme):
    assert_fails("acme", "--name", "Another Acme", match="tenant 'acme' already exists")
    assert Tenant.objects.get(slug="acme").name == "Acme"


@pytest.mark.django_db
def test_it_requires_a_slug():
    assert_fails(match="required: slug")


@pytest.mark.parametrize("ttl", ["-1", "ten", "1.5"])
@pytest.mark.django_db
def test_it_rejects_a_cache_ttl_that_is_not_a_whole_number_of_seconds(ttl):
    assert_fails("acme", "--cache-ttl", ttl, match=repr(ttl))


@pytest.mark.django_db
def test_it_rejects_a_name_too_long():
    assert_fails("acme", "--name", "x" * 201, match="at most 200 characters")


@pytest.mark.django_db
def test_from_the_command_line_a_bad_argument_is_one_line_on_stderr_and_exit_1(capsys):
    with pytest.raises(SystemExit) as exit_:
        execute_from_command_line(["manage.py", "create_tenant", "Not A Slug"])

    assert exit_.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        "CommandError: malformed slug 'Not A Slug': use lowercase letters, digits and '-' "
        "(not first or last), at most 63 characters"
    ]
    assert not Tenant.objects.exists()
