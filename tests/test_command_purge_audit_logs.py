import os
import signal
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from audit.management.commands.purge_audit_logs import _stop_on_sigterm
from audit.models import AuditLog, RequestLog
from audit.purge import logs_purge


def run(*args):
    out = StringIO()
    call_command("purge_audit_logs", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def audit_rows(tenant, n, *, days_old):
    rows = AuditLog.objects.bulk_create(
        AuditLog(action="test.event", actor_label="test", tenant=tenant) for _ in range(n)
    )
    # created_at is auto_now_add: age the rows afterwards.
    AuditLog.objects.filter(pk__in=[r.pk for r in rows]).update(
        created_at=timezone.now() - timedelta(days=days_old)
    )
    return rows


def request_rows(tenant, n, *, days_old):
    created_at = timezone.now() - timedelta(days=days_old)
    return RequestLog.objects.bulk_create(
        RequestLog(
            created_at=created_at,
            request_id=f"req-{days_old}-{i}",
            tenant=tenant,
            endpoint="chat/completions",
            status=200,
        )
        for i in range(n)
    )


def remaining():
    return (AuditLog.objects.filter(action="test.event").count(), RequestLog.objects.count())


@pytest.fixture
def logs(acme, globex):
    """Old (40 days) and new (1 day) rows of acme, globex and (audit only) no tenant."""
    for tenant in (acme, globex):
        audit_rows(tenant, 3, days_old=40)
        audit_rows(tenant, 2, days_old=1)
        request_rows(tenant, 4, days_old=40)
        request_rows(tenant, 1, days_old=1)
    audit_rows(None, 2, days_old=40)


@pytest.mark.django_db
def test_it_deletes_rows_older_than_the_cutoff_and_keeps_newer_ones(logs):
    output = run("--older-than", "30d")

    assert output.splitlines()[1:] == ["AuditLog: 8 deleted", "RequestLog: 8 deleted"]
    assert remaining() == (4, 2)
    cutoff = timezone.now() - timedelta(days=30)
    assert not AuditLog.objects.filter(action="test.event", created_at__lt=cutoff).exists()
    assert not RequestLog.objects.filter(created_at__lt=cutoff).exists()


@pytest.mark.django_db
def test_a_longer_age_keeps_more(logs):
    run("--older-than", "90d")

    assert remaining() == (12, 10)


@pytest.mark.django_db
def test_tenant_limits_the_purge_to_that_tenants_rows(logs, acme, globex):
    heading, *counts = run("--older-than", "30d", "--tenant", "acme").splitlines()

    assert heading.startswith("rows of tenant acme older than ")
    assert counts == ["AuditLog: 3 deleted", "RequestLog: 4 deleted"]
    assert AuditLog.objects.filter(action="test.event", tenant=acme).count() == 2
    assert AuditLog.objects.filter(action="test.event", tenant=globex).count() == 5
    assert AuditLog.objects.filter(action="test.event", tenant=None).count() == 2
    assert RequestLog.objects.filter(tenant=acme).count() == 1
    assert RequestLog.objects.filter(tenant=globex).count() == 5


@pytest.mark.django_db
def test_dry_run_counts_and_deletes_nothing(logs):
    output = run("--older-than", "30d", "--dry-run")

    assert output.splitlines()[1:] == [
        "AuditLog: 8 would be deleted (dry run)",
        "RequestLog: 8 would be deleted (dry run)",
    ]
    assert remaining() == (12, 10)
    assert not AuditLog.objects.filter(action="audit.purge").exists()


@pytest.mark.django_db
def test_it_deletes_in_batches_until_everything_old_is_gone(logs):
    output = run("--older-than", "30d", "--batch-size", "3")

    assert output.splitlines()[1:] == ["AuditLog: 8 deleted", "RequestLog: 8 deleted"]
    assert remaining() == (4, 2)


@pytest.mark.django_db
def test_it_audits_the_purge(logs, acme):
    run("--older-than", "30d", "--tenant", "acme")

    audit = AuditLog.objects.get(action="audit.purge")
    assert (audit.actor_label, audit.tenant) == ("command", acme)
    assert audit.metadata["deleted"] == {"AuditLog": 3, "RequestLog": 4}


@pytest.mark.django_db
def test_nothing_to_delete_writes_no_audit_row(acme):
    output = run("--older-than", "30d")

    assert output.splitlines()[1:] == ["AuditLog: 0 deleted", "RequestLog: 0 deleted"]
    assert not AuditLog.objects.exists()


@pytest.mark.django_db
def test_a_purge_asked_to_stop_ends_after_the_current_batch(logs):
    batches = []

    def stop_after_first_batch():
        batches.append(1)
        return len(batches) > 1

    deleted = logs_purge(
        cutoff=timezone.now() - timedelta(days=30), batch_size=3, should_stop=stop_after_first_batch
    )

    assert deleted == {"AuditLog": 3, "RequestLog": 0}
    assert remaining() == (9, 10)
    assert AuditLog.objects.get(action="audit.purge").metadata["stopped_early"] is True


def test_sigterm_during_a_purge_asks_it_to_stop_instead_of_killing_it():
    previous = signal.getsignal(signal.SIGTERM)

    with _stop_on_sigterm() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(timeout=5)

    assert signal.getsignal(signal.SIGTERM) == previous


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ([], "required: --older-than"),
        (["--older-than", "30"], "invalid duration"),
        (["--older-than", "a month"], "invalid duration"),
        (["--older-than", "0d"], "must be more than 0"),
        (["--older-than", "30d", "--tenant", "nope"], "unknown tenant 'nope'"),
        (["--older-than", "30d", "--batch-size", "0"], "between 1 and"),
    ],
)
@pytest.mark.django_db
def test_it_rejects_bad_input_and_deletes_nothing(logs, args, error):
    before = (AuditLog.objects.count(), RequestLog.objects.count())

    with pytest.raises(CommandError, match=error) as failure:
        run(*args)

    assert failure.value.returncode != 0
    assert "\n" not in str(failure.value)
    assert (AuditLog.objects.count(), RequestLog.objects.count()) == before
