from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.forms.models import model_to_dict

from audit.models import AuditLog
from tenants.models import Tenant


def run(*args):
    out = StringIO()
    call_command("update_tenant", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def assert_fails(*args, match):
    before = ([model_to_dict(t) for t in Tenant.objects.all()], AuditLog.objects.count())
    with pytest.raises(CommandError, match=match) as failure:
        run(*args)
    assert failure.value.returncode != 0
    assert "\n" not in str(failure.value)
    assert ([model_to_dict(t) for t in Tenant.objects.all()], AuditLog.objects.count()) == before


@pytest.mark.django_db
def test_it_changes_the_given_fields_and_audits_old_and_new_values(acme):
    output = run("acme", "--name", "Acme Corp", "--no-active", "--cache-ttl", "120", "--retention-days", "30")

    acme.refresh_from_db()
    assert (acme.name, acme.is_active, acme.cache_ttl_seconds, acme.retention_days) == (
        "Acme Corp",
        False,
        120,
        30,
    )
    assert output.startswith("updated tenant acme: ")
    audit = AuditLog.objects.get(action="tenant.update")
    assert audit.actor_label == "command"
    assert audit.tenant == acme
    assert audit.metadata == {
        "name": ["Acme", "Acme Corp"],
        "is_active": [True, False],
        "cache_ttl_seconds": [0, 120],
        "retention_days": [90, 30],
    }


@pytest.mark.django_db
def test_it_leaves_the_fields_not_given_alone(acme):
    Tenant.objects.filter(pk=acme.pk).update(cache_ttl_seconds=60)

    run("acme", "--name", "Renamed")

    acme.refresh_from_db()
    assert (acme.name, acme.cache_ttl_seconds, acme.is_active, acme.retention_days) == (
        "Renamed",
        60,
        True,
        90,
    )


@pytest.mark.django_db
def test_a_cache_ttl_of_0_turns_the_cache_off(acme):
    Tenant.objects.filter(pk=acme.pk).update(cache_ttl_seconds=60)

    run("acme", "--cache-ttl", "0")

    acme.refresh_from_db()
    assert acme.cache_ttl_seconds == 0


@pytest.mark.django_db
def test_active_switches_a_tenant_back_on(acme):
    Tenant.objects.filter(pk=acme.pk).update(is_active=False)

    run("acme", "--active")

    acme.refresh_from_db()
    assert acme.is_active


@pytest.mark.django_db
def test_values_equal_to_the_current_ones_change_nothing_and_write_no_audit_row(acme):
    output = run("acme", "--name", "Acme", "--active")

    assert output == "tenant acme unchanged\n"
    assert not AuditLog.objects.exists()


@pytest.mark.django_db
def test_it_touches_only_the_named_tenant(acme, globex):
    run("acme", "--no-active")

    globex.refresh_from_db()
    assert globex.is_active


@pytest.mark.django_db
def test_it_rejects_an_unknown_tenant(acme):
    assert_fails("nope", "--no-active", match="unknown tenant 'nope'")


@pytest.mark.django_db
def test_it_needs_something_to_change(acme):
    assert_fails("acme", match="nothing to change")


@pytest.mark.parametrize(
    ("option", "value"), [("--cache-ttl", "-5"), ("--cache-ttl", "soon"), ("--retention-days", "0")]
)
@pytest.mark.django_db
def test_it_rejects_a_bad_number(acme, option, value):
    assert_fails("acme", "--name", "Changed", option, value, match=repr(value))


@pytest.mark.django_db
def test_it_rejects_a_name_too_long_and_keeps_the_other_changes_out_too(acme):
    assert_fails("acme", "--no-active", "--name", "x" * 201, match="at most 200 characters")
