"""Retention: delete old AuditLog and RequestLog rows in small batches.

Each batch is its own short transaction (a few thousand ids, deleted by
primary key) so a purge of millions of rows never holds long locks, never
loads more than one batch of ids, and can stop between batches.
"""

from django.db import transaction

from audit.models import AuditLog, RequestLog
from audit.services import audit_record

BATCH_SIZE = 5000
PURGED_MODELS = (AuditLog, RequestLog)


def _old_rows(model, *, cutoff, tenant):
    rows = model.objects.filter(created_at__lt=cutoff)
    return rows.filter(tenant=tenant) if tenant is not None else rows


def logs_count(*, cutoff, tenant=None):
    """{model name: rows older than cutoff}: what logs_purge would delete."""
    return {model.__name__: _old_rows(model, cutoff=cutoff, tenant=tenant).count() for model in PURGED_MODELS}


def logs_purge(*, cutoff, tenant=None, batch_size=BATCH_SIZE, should_stop=lambda: False, actor=None):
    """Delete rows older than cutoff (of one tenant, or all); return {model name: rows deleted}.

    ``should_stop`` is asked between batches (e.g. after a SIGTERM). Not atomic
    as a whole, on purpose: what was deleted stays deleted and is audited.
    """
    deleted = {}
    for model in PURGED_MODELS:
        deleted[model.__name__] = 0
        rows = _old_rows(model, cutoff=cutoff, tenant=tenant).order_by("id")
        while not should_stop():
            ids = list(rows.values_list("id", flat=True)[:batch_size])
            if not ids:
                break
            with transaction.atomic():
                count, _ = model.objects.filter(id__in=ids).delete()
            deleted[model.__name__] += count
            if len(ids) < batch_size:
                break
    if any(deleted.values()):
        audit_record(
            actor=actor,
            action="audit.purge",
            tenant=tenant,
            metadata={
                "cutoff": cutoff.isoformat(),
                "deleted": deleted,
                "stopped_early": should_stop(),
            },
        )
    return deleted
