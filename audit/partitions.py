"""The request log's monthly partitions (PostgreSQL; on SQLite it is a plain table and all this is a no-op).

audit_requestlog is PARTITION BY RANGE (created_at), one partition per UTC
month named audit_requestlog_pYYYY_MM, plus a DEFAULT partition so that an
insert never fails for want of a partition (migration 0004). Months are
created ahead: at migrate time, by purge_audit_logs, and by the usage writer
when its rows come within AHEAD months of the last partition it knows of.

A month is created as a plain table, filled with the rows of that month the
default partition holds (PostgreSQL refuses to attach a partition whose rows
the default partition already has), then attached: ATTACH takes only a SHARE
UPDATE EXCLUSIVE lock on the parent, where CREATE TABLE ... PARTITION OF would
block every reader and writer; the default partition is locked (ACCESS
EXCLUSIVE) for the move, which is short because the default is normally empty.

Purging a whole month is DETACH + DROP: an ACCESS EXCLUSIVE lock on the parent
for a catalog change, instead of deleting and vacuuming the month's rows.
Every lock is taken under a lock_timeout so that a long query on the table
cannot queue the proxy's writes behind us; the caller then tries again later
(or deletes the rows in batches instead).
"""

import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import DatabaseError, connections, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

TABLE = "audit_requestlog"
DEFAULT_PARTITION = f"{TABLE}_default"
# Months created ahead of the current one.
AHEAD = 2
LOCK_TIMEOUT = "2s"
# After a failed attempt (lock timeout), the usage writer tries again this much later.
RETRY_SECONDS = 300
# Serialises the processes that create partitions (any constant that no other advisory lock uses).
ADVISORY_LOCK = 0x6C70_7061_7274  # "lppart"

_BOUNDS_RE = re.compile(r"FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclass(frozen=True)
class Partition:
    name: str
    start: datetime | None  # None: the default partition
    end: datetime | None

    @property
    def is_default(self):
        return self.start is None


def month_start(when: datetime) -> datetime:
    when = when.astimezone(UTC)
    return datetime(when.year, when.month, 1, tzinfo=UTC)


def add_months(month: datetime, months: int) -> datetime:
    index = month.year * 12 + month.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(month: datetime) -> str:
    return f"{TABLE}_p{month:%Y_%m}"


def is_partitioned(using="default") -> bool:
    return connections[using].vendor == "postgresql"


def partitions(cursor) -> list[Partition]:
    """The partitions of the request log, oldest first, the default partition last."""
    cursor.execute(
        """
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = %s::regclass
        """,
        [TABLE],
    )
    found = []
    for name, bound in cursor.fetchall():
        match = _BOUNDS_RE.search(bound)
        if match:
            start, end = (datetime.fromisoformat(value) for value in match.groups())
            found.append(Partition(name, start, end))
        else:
            found.append(Partition(name, None, None))
    return sorted(found, key=lambda p: (p.is_default, p.start or datetime.min.replace(tzinfo=UTC)))


def columns(cursor) -> str:
    """The request log's columns, quoted and comma-separated, in table order."""
    cursor.execute(
        """
        SELECT quote_ident(attname) FROM pg_attribute
        WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum
        """,
        [TABLE],
    )
    return ", ".join(name for (name,) in cursor.fetchall())


def _literal(when: datetime) -> str:
    return f"'{when.astimezone(UTC):%Y-%m-%d %H:%M:%S}+00'"


def month_partition_create(cursor, month: datetime) -> str:
    """Create and attach the partition of ``month``, moving that month's rows out of the default partition."""
    name, start, end = partition_name(month), _literal(month), _literal(add_months(month, 1))
    cursor.execute(
        f"CREATE TABLE {name} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)"
    )
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [DEFAULT_PARTITION])
    if cursor.fetchone()[0]:
        cursor.execute(f"LOCK TABLE {DEFAULT_PARTITION} IN ACCESS EXCLUSIVE MODE")
        cols = columns(cursor)
        # The names in this module's SQL are its own or the catalog's, never input.
        cursor.execute(
            f"""
            WITH moved AS (
                DELETE FROM {DEFAULT_PARTITION} WHERE created_at >= {start} AND created_at < {end}
                RETURNING {cols}
            )
            INSERT INTO {name} ({cols}) SELECT {cols} FROM moved
            """  # noqa: S608
        )
        if cursor.rowcount:
            logger.info("moved %d request log rows from %s to %s", cursor.rowcount, DEFAULT_PARTITION, name)
    cursor.execute(f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES FROM ({start}) TO ({end})")
    return name


def _set_lock_timeout(cursor):
    # For the rest of the transaction only.
    cursor.execute("SELECT set_config('lock_timeout', %s, true)", [LOCK_TIMEOUT])


def ensure_partitions(*, now=None, ahead=AHEAD, using="default") -> list[str]:
    """Create the partitions of the month of ``now`` and the ``ahead`` months after it that are missing.

    Returns the names created. Safe to run from several processes at once; raises
    DatabaseError (OperationalError on a lock timeout) with nothing changed.
    """
    if not is_partitioned(using):
        return []
    first = month_start(now or timezone.now())
    months = [add_months(first, n) for n in range(ahead + 1)]
    with connections[using].cursor() as cursor:
        existing = {p.name for p in partitions(cursor)}
    if all(partition_name(m) in existing for m in months):
        return []
    created = []
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK])
        _set_lock_timeout(cursor)
        existing = {p.name for p in partitions(cursor)}  # another process may have been first
        for month in months:
            if partition_name(month) not in existing:
                created.append(month_partition_create(cursor, month))
    for name in created:
        logger.info("created request log partition %s", name)
    return created


# The usage writer's check: per process and database, the end of the last month
# known to have its partition, and when to try again after a failure.
_ready_until: dict[str, datetime] = {}
_retry_at: dict[str, float] = {}


def ensure_partitions_for(newest: datetime, *, using="default"):
    """Make sure the month of ``newest`` and the AHEAD months after it have partitions; cheap per batch.

    Only a comparison, except when ``newest`` comes within AHEAD months of the
    last partition this process knows of: once after start, then about once a
    month. A failure is logged, not raised: the default partition takes the rows.
    """
    if not is_partitioned(using):
        return
    month = month_start(newest)
    ready = _ready_until.get(using)
    if ready is not None and add_months(month, AHEAD + 1) <= ready:
        return
    if time.monotonic() < _retry_at.get(using, 0):
        return
    try:
        ensure_partitions(now=month, using=using)
    except DatabaseError as exc:
        _retry_at[using] = time.monotonic() + RETRY_SECONDS
        logger.warning("request log partitions not created (retrying in %d s): %s", RETRY_SECONDS, exc)
        return
    _ready_until[using] = add_months(month, AHEAD + 1)


def expired_partitions(cursor, before: datetime) -> list[Partition]:
    """The month partitions whose whole range is older than ``before``."""
    return [p for p in partitions(cursor) if not p.is_default and p.end <= before]


def keeps_rows(cursor, partition: Partition, cutoffs: dict[int, datetime | None]) -> bool:
    """Whether ``partition`` holds a row of a tenant of ``cutoffs`` at or after its cut-off (None: any row).

    One index probe per tenant ((tenant_id, created_at) index), not a scan of the partition.
    """
    if not cutoffs:
        return False
    tenants = list(cutoffs)
    since = [cutoff or partition.start for cutoff in cutoffs.values()]
    cursor.execute(
        f"""
        SELECT EXISTS (
            SELECT 1 FROM unnest(%s::bigint[], %s::timestamptz[]) AS k(tenant_id, since)
            WHERE EXISTS (
                SELECT 1 FROM {partition.name} r WHERE r.tenant_id = k.tenant_id AND r.created_at >= k.since
            )
        )
        """,  # noqa: S608
        [tenants, since],
    )
    return cursor.fetchone()[0]


def partition_drop(partition, *, using="default", tenants=None):
    """Detach and drop ``partition``; return its rows per tenant ({tenant id: rows}).

    The rows are counted first, in the same transaction, so the caller can say
    what went. Returns None, changing nothing, when the partition holds rows of
    a tenant not in ``tenants`` (when given), or when the lock is not granted
    within lock_timeout: the rows are then left to the batched delete.
    """
    assert not partition.is_default
    try:
        with transaction.atomic(using=using), connections[using].cursor() as cursor:
            cursor.execute(f"SELECT tenant_id, count(*) FROM {partition.name} GROUP BY tenant_id")  # noqa: S608
            rows = dict(cursor.fetchall())
            if tenants is not None and not set(rows) <= set(tenants):
                return None
            _set_lock_timeout(cursor)
            cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {partition.name}")
            cursor.execute(f"DROP TABLE {partition.name}")
    except DatabaseError as exc:
        logger.warning(
            "request log partition %s not dropped, its rows are deleted in batches: %s", partition.name, exc
        )
        return None
    logger.info("dropped request log partition %s (%d rows)", partition.name, sum(rows.values()))
    return rows
