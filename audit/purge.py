"""Retention: delete old AuditLog and RequestLog rows in small batches.

Each batch is its own short transaction that deletes one range of primary
keys (at most batch_size rows), found by keyset: the purge never holds a lock
for long, holds no list of ids in memory (constant memory on any table), and
can stop between batches. Hourly usage rollups (TokenUsageMetric) are kept:
they are the long-term record of usage.

Purging audit rows cuts the start of their hash chain: each batch moves the
chain's anchor to the newest row it deleted, in the same transaction, so the
rows left still verify.

On PostgreSQL the request log is partitioned by month (audit/partitions.py): a
purge of every tenant first drops the months whose rows are all past their
cut-off (expired_partitions_drop), counting their rows, and deletes the rest
in batches as above.
"""

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connections, router, transaction
from django.db.models import Max

from audit import partitions
from audit.models import AuditChain, AuditLog, RequestLog
from audit.services import audit_record
from tenants.models import Tenant

BATCH_SIZE = 5000
PURGED_MODELS = (AuditLog, RequestLog)
# Audit rows of no tenant (platform actions, tenants since deleted) are kept this long.
PLATFORM_RETENTION_DAYS = 90


class _NoTenant:
    """Scope of the rows that belong to no tenant (tenant=None means every tenant)."""


NO_TENANT = _NoTenant()


def _old_rows(model, *, cutoff, tenant):
    rows = model.objects.filter(created_at__lt=cutoff)
    if tenant is NO_TENANT:
        return rows.filter(tenant__isnull=True)
    return rows.filter(tenant=tenant) if tenant is not None else rows


def _models_for(tenant):
    # A request log row always has a tenant.
    return (AuditLog,) if tenant is NO_TENANT else PURGED_MODELS


def logs_count(*, cutoff, tenant=None):
    """{model name: rows older than cutoff}: what logs_purge would delete."""
    return {
        model.__name__: _old_rows(model, cutoff=cutoff, tenant=tenant).count()
        for model in _models_for(tenant)
    }


def _move_anchors(batch):
    """Make the newest audit row this batch deletes, per chain, that chain's anchor."""
    newest = batch.filter(chain__isnull=False).order_by().values("chain").annotate(seq=Max("seq"))
    for item in newest:
        newest_row = AuditLog.objects.filter(chain=item["chain"], seq=item["seq"])
        row_hash = newest_row.values_list("row_hash", flat=True).first()
        AuditChain.objects.filter(chain=item["chain"], anchor_seq__lt=item["seq"]).update(
            anchor_seq=item["seq"], anchor_hash=row_hash or ""
        )


def _delete_in_batches(model, rows, *, batch_size, should_stop):
    deleted = 0
    last_id = 0
    while not should_stop():
        window = rows.filter(id__gt=last_id).order_by("id")
        # The id that ends this batch (the batch_size-th row), or None: the rest fits in one batch.
        upper = next(iter(window.values_list("id", flat=True)[batch_size - 1 : batch_size]), None)
        batch = window.filter(id__lte=upper) if upper is not None else window
        with transaction.atomic():
            if model is AuditLog:
                _move_anchors(batch)
            deleted += batch.order_by().delete()[0]
        if upper is None:
            break
        last_id = upper
    return deleted


def logs_purge(
    *, cutoff, tenant=None, batch_size=BATCH_SIZE, should_stop=lambda: False, actor=None, dropped=0
):
    """Delete rows older than cutoff (of one tenant, of no tenant, or all); return {model name: rows deleted}.

    ``should_stop`` is asked between batches (e.g. after a SIGTERM). Not atomic
    as a whole, on purpose: what was deleted stays deleted and is audited.
    ``dropped``: request log rows of this scope already gone with their
    partitions (expired_partitions_drop), counted and audited with the rest.
    """
    deleted = {}
    for model in _models_for(tenant):
        rows = _old_rows(model, cutoff=cutoff, tenant=tenant)
        deleted[model.__name__] = _delete_in_batches(
            model, rows, batch_size=batch_size, should_stop=should_stop
        )
    if RequestLog.__name__ in deleted:
        deleted[RequestLog.__name__] += dropped
    if any(deleted.values()):
        audit_record(
            actor=actor,
            action="audit.purge",
            tenant=None if tenant is NO_TENANT else tenant,
            metadata={
                "cutoff": cutoff.isoformat(),
                "deleted": deleted,
                "stopped_early": should_stop(),
            },
        )
    return deleted


@dataclass
class RetentionScope:
    label: str  # "tenant acme", "no tenant"
    tenant: object  # a Tenant or NO_TENANT
    days: int

    def cutoff(self, now):
        return now - timedelta(days=self.days)


def retention_scopes(tenant=None):
    """Each tenant with its retention_days (or just ``tenant``), then the rows of no tenant."""
    tenants = [tenant] if tenant is not None else Tenant.objects.only("id", "slug", "retention_days")
    for t in tenants:
        yield RetentionScope(f"tenant {t.slug}", t, t.retention_days)
    if tenant is None:
        yield RetentionScope("no tenant", NO_TENANT, PLATFORM_RETENTION_DAYS)


def retention_cutoffs(now) -> dict[int, datetime | None]:
    """{tenant id: cut-off of its retention_days, None when it keeps everything (0 days)}."""
    return {
        s.tenant.id: s.cutoff(now) if s.days > 0 else None
        for s in retention_scopes()
        if s.tenant is not NO_TENANT
    }


def expired_partitions_drop(*, cutoffs, should_stop=lambda: False) -> Counter:
    """Drop the request log's month partitions whose every row is past its cut-off: {tenant id: rows dropped}.

    ``cutoffs`` is one cut-off for every tenant, or each tenant's own
    (retention_cutoffs). Only for a purge of every tenant: a month holds the
    rows of all of them. Months partly within a cut-off, and rows of the default
    partition, are left to the batched delete. PostgreSQL only; nothing on SQLite.
    """
    dropped = Counter()
    using = router.db_for_write(RequestLog)
    if not partitions.is_partitioned(using):
        return dropped
    per_tenant = isinstance(cutoffs, dict)
    newest = max((c for c in cutoffs.values() if c is not None), default=None) if per_tenant else cutoffs
    if newest is None:
        return dropped
    with connections[using].cursor() as cursor:
        candidates = partitions.expired_partitions(cursor, newest)
    for partition in candidates:
        if should_stop():
            break
        if per_tenant:
            # Tenants whose cut-off is before the month's end (or who keep everything) may keep rows of it.
            keeping = {t: c for t, c in cutoffs.items() if c is None or c < partition.end}
            with connections[using].cursor() as cursor:
                if partitions.keeps_rows(cursor, partition, keeping):
                    continue
            # Not when it holds rows of a tenant created since the cut-offs were read.
            rows = partitions.partition_drop(partition, using=using, tenants=cutoffs)
        else:
            rows = partitions.partition_drop(partition, using=using)
        if rows:
            dropped.update(rows)
    return dropped
