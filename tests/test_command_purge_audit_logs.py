import os
import signal
import tracemalloc
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from audit.management.commands.purge_audit_logs import _stop_on_sigterm
from audit.models import AuditLog, RequestLog
from audit.purge import logs_purge
from quotas.models import TokenUsageMetric


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


# --- without --older-than: each tenant's retention_days --------------------------


@pytest.fixture
def retention_logs(acme, globex):
    """acme keeps 30 days, globex the default 90; rows 40 and 120 days old of each, and of no tenant."""
    acme.retention_days = 30
    acme.save()
    for tenant in (acme, globex, None):
        audit_rows(tenant, 2, days_old=40)
        audit_rows(tenant, 1, days_old=120)
        if tenant is not None:
            request_rows(tenant, 3, days_old=40)
            request_rows(tenant, 1, days_old=120)


@pytest.mark.django_db
def test_without_older_than_each_tenants_retention_applies(retention_logs, acme, globex):
    output = run()

    assert output.splitlines() == [
        "rows older than each tenant's retention_days:",
        "tenant acme (30 days): AuditLog 3, RequestLog 4",
        "tenant globex (90 days): AuditLog 1, RequestLog 1",
        "no tenant (90 days): AuditLog 1",
        "AuditLog: 5 deleted",
        "RequestLog: 5 deleted",
    ]
    assert AuditLog.objects.filter(action="test.event", tenant=acme).count() == 0
    assert AuditLog.objects.filter(action="test.event", tenant=globex).count() == 2
    assert AuditLog.objects.filter(action="test.event", tenant=None).count() == 2
    assert RequestLog.objects.filter(tenant=globex).count() == 3


@pytest.mark.django_db
def test_without_older_than_a_tenant_option_applies_that_tenants_retention_only(retention_logs, globex):
    output = run("--tenant", "acme")

    assert output.splitlines()[1:] == [
        "tenant acme (30 days): AuditLog 3, RequestLog 4",
        "AuditLog: 3 deleted",
        "RequestLog: 4 deleted",
    ]
    assert AuditLog.objects.filter(action="test.event", tenant=None).count() == 3


@pytest.mark.django_db
def test_a_retention_dry_run_counts_per_tenant_and_deletes_nothing(retention_logs):
    before = remaining()

    output = run("--dry-run")

    assert output.splitlines()[-2:] == [
        "AuditLog: 5 would be deleted (dry run)",
        "RequestLog: 5 would be deleted (dry run)",
    ]
    assert "tenant acme (30 days): AuditLog 3, RequestLog 4" in output
    assert remaining() == before


@pytest.mark.django_db
def test_a_purge_keeps_the_hourly_usage_rollups(retention_logs, acme):
    old_hour = (timezone.now() - timedelta(days=400)).replace(minute=0, second=0, microsecond=0)
    TokenUsageMetric.objects.create(bucket=old_hour, tenant=acme, model="m", requests=5)

    run()
    run("--older-than", "1s")

    assert TokenUsageMetric.objects.get().requests == 5


# --- scale: 100,000 rows, constant memory ----------------------------------------


def insert_request_rows(tenant, n, *, days_old):
    """n request rows in one INSERT ... SELECT (bulk_create of 100,000 objects would dominate the test)."""
    created_at = connection.ops.adapt_datetimefield_value(timezone.now() - timedelta(days=days_old))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH RECURSIVE counter(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM counter WHERE i < %s)
            INSERT INTO {RequestLog._meta.db_table} (
                created_at, request_id, tenant_id, key_prefix, endpoint, model, provider, upstream_model,
                status, stream, input_tokens, output_tokens, tokens_estimated, cost, latency_ms,
                cache_hit, error_type, attempts, prompt, completion
            )
            SELECT %s, 'bulk', %s, '', 'chat/completions', 'm', 'p', 'u', 200, %s, 10, 20, %s, 0, 1.5,
                   %s, '', '[]', '', ''
            FROM counter
            """,
            [n, created_at, tenant.pk, False, False, False],
        )


@pytest.mark.django_db
def test_it_purges_100000_rows_in_bounded_batches_within_constant_memory(acme):
    insert_request_rows(acme, 100_000, days_old=40)
    request_rows(acme, 3, days_old=1)
    assert RequestLog.objects.count() == 100_003
    deletes = []

    def record_deletes(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.startswith("DELETE"):
            deletes.append(context["cursor"].rowcount)
        return result

    tracemalloc.start()
    try:
        with connection.execute_wrapper(record_deletes):
            deleted = logs_purge(cutoff=timezone.now() - timedelta(days=30), tenant=acme, batch_size=5000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert deleted == {"AuditLog": 0, "RequestLog": 100_000}
    assert RequestLog.objects.count() == 3
    # One short transaction per 5,000 rows, never one statement over everything.
    assert max(deletes) == 5000 and sum(deletes) == 100_000
    # Holding the 100,000 ids alone would take about 4 MB.
    assert peak < 500_000, f"peak {peak} bytes"
