"""The request log's monthly partitions on PostgreSQL; on SQLite the same calls keep working on a plain table.

Every test runs on both databases: what it asserts about the application
(rows written, read, purged, the command's output) holds on both, and on
PostgreSQL it also checks the partitions in the catalog (pg_inherits).
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.utils import timezone

from audit import partitions
from audit.models import AuditLog, RequestLog
from llmproxy.gateway.usage import UsageRecord, UsageRecorder
from llmproxy.gateway.usage_spool import Spool

POSTGRESQL = connection.vendor == "postgresql"


def run_purge(*args):
    out = StringIO()
    call_command("purge_audit_logs", *args, stdout=out, stderr=StringIO())
    return out.getvalue().splitlines()


def month(when):
    return datetime(when.year, when.month, 1, tzinfo=UTC)


def months_after(first, n):
    index = first.year * 12 + first.month - 1 + n
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def name_of(first):
    return f"audit_requestlog_p{first:%Y_%m}"


def catalog_partitions():
    """{partition name: its bound} as PostgreSQL's catalog has them; {} on SQLite."""
    if not POSTGRESQL:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'audit_requestlog'::regclass
            """
        )
        return dict(cursor.fetchall())


def table_exists(name):
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        return cursor.fetchone()[0]


def partition_of(request_id):
    """The partition that holds the row(s) of request_id (PostgreSQL)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT tableoid::regclass::text FROM audit_requestlog WHERE request_id = %s",
            [request_id],
        )
        return [name for (name,) in cursor.fetchall()]


def request_rows(tenant, n, *, created_at, request_id=None):
    return RequestLog.objects.bulk_create(
        RequestLog(
            created_at=created_at,
            request_id=request_id or f"req-{created_at:%Y%m%d}-{i}",
            tenant=tenant,
            endpoint="chat/completions",
            status=200,
        )
        for i in range(n)
    )


@pytest.fixture
def old_month(acme, globex):
    """A month about four months back with its own partition, holding 3 rows of acme and 2 of globex."""
    when = month(timezone.now() - timedelta(days=120)) + timedelta(days=10)
    request_rows(acme, 3, created_at=when, request_id="old-acme")
    request_rows(globex, 2, created_at=when, request_id="old-globex")
    partitions.ensure_partitions(now=when, ahead=0)
    if POSTGRESQL:
        assert partition_of("old-acme") == partition_of("old-globex") == [name_of(month(when))]
    return month(when)


@pytest.fixture
def partitions_restored(transactional_db):
    """For the tests that commit: drop the partitions they made, so later tests find what migrate made."""
    before = set(catalog_partitions())
    yield
    with connection.cursor() as cursor:
        for name in set(catalog_partitions()) - before:
            cursor.execute(f"ALTER TABLE audit_requestlog DETACH PARTITION {name}")
            cursor.execute(f"DROP TABLE {name}")


# --- layout -----------------------------------------------------------------------


@pytest.mark.django_db
def test_after_migrate_this_month_and_the_next_two_have_partitions_and_a_default_takes_the_rest():
    if not POSTGRESQL:
        with connection.cursor() as cursor:
            pk = connection.introspection.get_primary_key_columns(cursor, "audit_requestlog")
        assert pk == ["id"]
        assert catalog_partitions() == {}
        return
    this_month = month(timezone.now())
    found = catalog_partitions()
    assert found["audit_requestlog_default"] == "DEFAULT"
    for n in range(3):
        first, end = months_after(this_month, n), months_after(this_month, n + 1)
        assert found[name_of(first)] == (
            f"FOR VALUES FROM ('{first:%Y-%m-%d} 00:00:00+00') TO ('{end:%Y-%m-%d} 00:00:00+00')"
        )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_partkeydef('audit_requestlog'::regclass)")
        assert cursor.fetchone()[0] == "RANGE (created_at)"
        pk = connection.introspection.get_primary_key_columns(cursor, "audit_requestlog")
        assert pk == ["id", "created_at"]
        cursor.execute("SELECT pg_get_serial_sequence('audit_requestlog', 'id')")
        assert cursor.fetchone()[0] == "public.audit_requestlog_id_seq"
        indexes = connection.introspection.get_constraints(cursor, "audit_requestlog")
    assert {"audit_reque_tenant__56f4a2_idx", "audit_reque_api_key_c93524_idx"} <= set(indexes)
    foreign_keys = {tuple(c["columns"]) for c in indexes.values() if c["foreign_key"]}
    assert foreign_keys == {("tenant_id",), ("api_key_id",)}


@pytest.mark.django_db
def test_rows_of_any_date_are_written_and_read_back_by_id(acme):
    now = timezone.now()
    dates = {
        "last-year": now - timedelta(days=400),
        "now": now,
        "next-month": months_after(month(now), 1) + timedelta(hours=1),
        "in-five-years": now + timedelta(days=5 * 365),
    }
    ids = {
        label: RequestLog.objects.create(
            created_at=when, request_id=label, tenant=acme, endpoint="chat/completions", status=200
        ).pk
        for label, when in dates.items()
    }

    assert len(set(ids.values())) == 4
    for label, pk in ids.items():
        assert RequestLog.objects.get(pk=pk).request_id == label
    if POSTGRESQL:
        assert partition_of("now") == [name_of(month(now))]
        assert partition_of("next-month") == [name_of(months_after(month(now), 1))]
        assert partition_of("last-year") == partition_of("in-five-years") == ["audit_requestlog_default"]


# --- the usage writer ---------------------------------------------------------------


def usage_record(tenant, request_id, created_at):
    return UsageRecord(
        created_at=created_at,
        request_id=request_id,
        tenant_id=tenant.id,
        api_key_id=None,
        key_prefix="",
        endpoint="chat/completions",
        model="m",
        status=200,
        input_tokens=3,
        output_tokens=4,
        cost=Decimal("0.000123"),
    )


@pytest.mark.django_db(transaction=True)  # the writer closes the connection after a flush
def test_the_usage_writer_puts_rows_in_their_months_partition_and_creates_a_missing_month(
    partitions_restored, acme, tmp_path
):
    recorder = UsageRecorder()
    recorder.spool = Spool(root=tmp_path / "spool")
    now = timezone.now()
    # A month no partition was created for (the clock jumped, or a batch waited in the spool).
    later = months_after(month(now), 6) + timedelta(days=3)
    recorder.add(usage_record(acme, "written-now", now))
    recorder.add(usage_record(acme, "written-later", later))

    assert recorder.flush() == 2

    rows = RequestLog.objects.order_by("created_at")
    assert [(r.request_id, r.created_at, r.input_tokens) for r in rows] == [
        ("written-now", now, 3),
        ("written-later", later, 3),
    ]
    if POSTGRESQL:
        assert partition_of("written-now") == [name_of(month(now))]
        assert partition_of("written-later") == [name_of(month(later))]
        # ...and the writer made the two months after it too.
        assert {name_of(months_after(month(later), n)) for n in (1, 2)} <= set(catalog_partitions())


@pytest.mark.django_db
def test_creating_a_month_moves_its_rows_out_of_the_default_partition(acme):
    when = month(timezone.now() - timedelta(days=120)) + timedelta(days=2)
    request_rows(acme, 4, created_at=when, request_id="early")
    far = timezone.now() + timedelta(days=5 * 365)
    request_rows(acme, 1, created_at=far, request_id="far")
    if POSTGRESQL:
        assert partition_of("early") == ["audit_requestlog_default"]

    created = partitions.ensure_partitions(now=when, ahead=0)

    assert RequestLog.objects.filter(request_id="early").count() == 4
    assert RequestLog.objects.filter(request_id="far").count() == 1
    if POSTGRESQL:
        assert created == [name_of(month(when))]
        assert partition_of("early") == [name_of(month(when))]
        assert partition_of("far") == ["audit_requestlog_default"]
        # Once there, asking again changes nothing.
        assert partitions.ensure_partitions(now=when, ahead=0) == []


@pytest.mark.django_db
def test_a_purge_creates_the_coming_months_ahead(acme):
    two_ahead = name_of(months_after(month(timezone.now()), 2))
    if POSTGRESQL:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE audit_requestlog DETACH PARTITION {two_ahead}")
            cursor.execute(f"DROP TABLE {two_ahead}")
        assert two_ahead not in catalog_partitions()

    assert run_purge("--older-than", "30d")[1:] == ["AuditLog: 0 deleted", "RequestLog: 0 deleted"]

    if POSTGRESQL:
        assert two_ahead in catalog_partitions()


# --- purging whole months -------------------------------------------------------------


@pytest.mark.django_db
def test_purging_an_expired_month_drops_its_partition_and_prints_its_rows(old_month, acme):
    request_rows(acme, 2, created_at=timezone.now() - timedelta(days=1), request_id="recent")
    # Expired too, but in a month not expired as a whole (or in the default partition): deleted row by row.
    request_rows(acme, 1, created_at=timezone.now() - timedelta(days=61), request_id="just-expired")

    output = run_purge("--older-than", "60d")

    assert output[1:] == ["AuditLog: 0 deleted", "RequestLog: 6 deleted"]
    assert sorted(RequestLog.objects.values_list("request_id", flat=True)) == ["recent", "recent"]
    audit = AuditLog.objects.get(action="audit.purge")
    assert audit.metadata["deleted"] == {"AuditLog": 0, "RequestLog": 6}
    if POSTGRESQL:
        assert name_of(old_month) not in catalog_partitions()
        assert not table_exists(name_of(old_month))  # dropped, not left detached
        assert name_of(month(timezone.now())) in catalog_partitions()


@pytest.mark.django_db
def test_a_purge_of_one_tenant_deletes_its_rows_only_and_drops_no_partition(old_month, acme, globex):
    output = run_purge("--older-than", "60d", "--tenant", "acme")

    assert output[1:] == ["AuditLog: 0 deleted", "RequestLog: 3 deleted"]
    assert not RequestLog.objects.filter(tenant=acme).exists()
    assert RequestLog.objects.filter(tenant=globex).count() == 2
    if POSTGRESQL:
        assert name_of(old_month) in catalog_partitions()
        assert partition_of("old-globex") == [name_of(old_month)]


@pytest.mark.django_db
def test_a_dry_run_counts_the_rows_of_an_expired_month_and_drops_nothing(old_month):
    output = run_purge("--older-than", "60d", "--dry-run")

    assert output[1:] == [
        "AuditLog: 0 would be deleted (dry run)",
        "RequestLog: 5 would be deleted (dry run)",
    ]
    assert RequestLog.objects.count() == 5
    if POSTGRESQL:
        assert name_of(old_month) in catalog_partitions()


@pytest.mark.django_db
def test_under_each_tenants_retention_a_month_goes_only_when_no_tenant_keeps_rows_of_it(
    old_month, acme, globex
):
    acme.retention_days = 30
    acme.save()
    globex.retention_days = 400
    globex.save()

    output = run_purge()

    assert output[1:] == [
        "tenant acme (30 days): AuditLog 0, RequestLog 3",
        "tenant globex (400 days): AuditLog 0, RequestLog 0",
        "no tenant (90 days): AuditLog 0",
        "AuditLog: 0 deleted",
        "RequestLog: 3 deleted",
    ]
    if POSTGRESQL:
        assert partition_of("old-globex") == [name_of(old_month)]

    globex.retention_days = 60
    globex.save()
    output = run_purge()

    assert output[1:] == [
        "tenant acme (30 days): AuditLog 0, RequestLog 0",
        "tenant globex (60 days): AuditLog 0, RequestLog 2",
        "no tenant (90 days): AuditLog 0",
        "AuditLog: 0 deleted",
        "RequestLog: 2 deleted",
    ]
    assert not RequestLog.objects.exists()
    if POSTGRESQL:
        assert name_of(old_month) not in catalog_partitions()


@pytest.mark.django_db
def test_a_tenant_without_retention_keeps_its_rows_and_so_their_month(old_month, acme, globex):
    acme.retention_days = 30
    acme.save()
    globex.retention_days = 0  # keeps everything
    globex.save()

    output = run_purge()

    assert output[1:] == [
        "tenant acme (30 days): AuditLog 0, RequestLog 3",
        "no tenant (90 days): AuditLog 0",
        "AuditLog: 0 deleted",
        "RequestLog: 3 deleted",
    ]
    assert RequestLog.objects.filter(tenant=globex).count() == 2
    if POSTGRESQL:
        assert partition_of("old-globex") == [name_of(old_month)]


@pytest.mark.django_db(transaction=True)
def test_a_month_held_by_a_long_query_is_purged_row_by_row_instead(
    partitions_restored, old_month, monkeypatch
):
    monkeypatch.setattr(partitions, "LOCK_TIMEOUT", "200ms")
    reader = connections.create_connection("default")
    try:
        with reader.cursor() as cursor:
            # A report in progress: its transaction holds a lock on the table until it ends.
            cursor.execute("BEGIN")
            cursor.execute("SELECT count(*) FROM audit_requestlog")
            output = run_purge("--older-than", "60d")
            cursor.execute("ROLLBACK")
    finally:
        reader.close()

    assert output[1:] == ["AuditLog: 0 deleted", "RequestLog: 5 deleted"]
    assert not RequestLog.objects.exists()
    if POSTGRESQL:
        assert name_of(old_month) in catalog_partitions()  # left for the next purge


# --- scale ------------------------------------------------------------------------------


def insert_request_rows(tenant, n, *, created_at):
    """n request rows in one INSERT ... SELECT."""
    created_at = connection.ops.adapt_datetimefield_value(created_at)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH RECURSIVE counter(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM counter WHERE i < %s)
            INSERT INTO audit_requestlog (
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
def test_a_month_of_100000_rows_is_purged_whole(acme):
    when = month(timezone.now() - timedelta(days=120)) + timedelta(days=5)
    partitions.ensure_partitions(now=when, ahead=0)
    insert_request_rows(acme, 100_000, created_at=when)
    # As if committed before the purge (which runs in transactions of its own): the deferred
    # foreign key checks of the rows run now, else PostgreSQL cannot drop their table yet.
    connection.check_constraints()
    deletes = []

    def record_deletes(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.startswith("DELETE") and "audit_requestlog" in sql:
            deletes.append(context["cursor"].rowcount)
        return result

    with connection.execute_wrapper(record_deletes):
        output = run_purge("--older-than", "60d")

    assert output[1:] == ["AuditLog: 0 deleted", "RequestLog: 100000 deleted"]
    assert not RequestLog.objects.exists()
    if POSTGRESQL:
        assert sum(deletes) == 0  # the month went with its partition, not a row deleted
    else:
        assert max(deletes) == 5000 and sum(deletes) == 100_000


# --- the migration ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_migrating_back_and_forth_keeps_the_rows_and_their_ids(partitions_restored, acme):
    now = timezone.now()
    rows = request_rows(acme, 2, created_at=now) + request_rows(acme, 1, created_at=now - timedelta(days=100))
    before = sorted(RequestLog.objects.values_list("id", "created_at"))
    assert len(before) == len(rows)

    call_command("migrate", "audit", "0003", verbosity=0)
    if POSTGRESQL:
        assert catalog_partitions() == {}
        with connection.cursor() as cursor:
            assert connection.introspection.get_primary_key_columns(cursor, "audit_requestlog") == ["id"]
    assert sorted(RequestLog.objects.values_list("id", "created_at")) == before
    between = request_rows(acme, 1, created_at=now, request_id="between")[0]

    call_command("migrate", "audit", verbosity=0)

    after = request_rows(acme, 1, created_at=now, request_id="after")[0]
    assert max(pk for pk, _ in before) < between.pk < after.pk
    assert RequestLog.objects.count() == 5
    if POSTGRESQL:
        assert partition_of("between") == [name_of(month(now))]
        assert partition_of(f"req-{now - timedelta(days=100):%Y%m%d}-0") == [
            name_of(month(now - timedelta(days=100)))
        ]
