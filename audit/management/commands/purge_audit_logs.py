import signal
import threading
from collections import Counter
from contextlib import contextmanager

from django.db import DatabaseError
from django.utils import timezone

from audit import partitions
from audit.purge import (
    BATCH_SIZE,
    NO_TENANT,
    expired_partitions_drop,
    logs_count,
    logs_purge,
    retention_cutoffs,
    retention_scopes,
)
from llmproxy.management import ProxyCommand, positive_duration_argument, whole_number_argument


@contextmanager
def _stop_on_sigterm():
    """An event set by SIGTERM, so the purge ends between batches instead of in the middle of one."""
    stop = threading.Event()
    # Signal handlers can only be installed from the main thread.
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


class Command(ProxyCommand):
    help = (
        "Delete audit log and request log rows older than --older-than, or without it older than each "
        "tenant's retention_days (rows of no tenant: 90 days), in batches of short transactions; "
        "--tenant limits it to one tenant's rows, --dry-run only counts them. Hourly usage rollups are "
        "kept. On PostgreSQL, a purge of every tenant drops the request log's expired months whole, and "
        "the coming months' partitions are created. SIGTERM stops it cleanly between batches."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            type=positive_duration_argument,
            metavar="DURATION",
            help="Age of the rows to delete, like 30d or 24h (default: each tenant's retention_days).",
        )
        self.add_tenant_argument(parser, help_text="Purge only this tenant's rows.")
        parser.add_argument("--dry-run", action="store_true", help="Count the rows, delete nothing.")
        parser.add_argument(
            "--batch-size",
            type=whole_number_argument(minimum=1, maximum=100_000),
            default=BATCH_SIZE,
            metavar="N",
            help=f"Rows deleted per transaction (default {BATCH_SIZE}).",
        )

    def handle(self, *args, older_than, tenant, dry_run, batch_size, **options):
        tenant = self.get_tenant(tenant)
        now = timezone.now()
        if older_than is not None:
            scope = f" of tenant {tenant.slug}" if tenant else ""
            self.stdout.write(f"rows{scope} older than {(now - older_than).isoformat(timespec='seconds')}:")
            plan = [(None, now - older_than, tenant)]
        else:
            self.stdout.write("rows older than each tenant's retention_days:")
            plan = [
                (f"{s.label} ({s.days} days)", s.cutoff(now), s.tenant)
                for s in retention_scopes(tenant)
                if s.days > 0  # 0 is no retention period: nothing is purged
            ]
        totals = {}
        with _stop_on_sigterm() as stop:
            dropped = Counter()
            if not dry_run:
                self.ensure_partitions()
                if tenant is None:
                    # A month holds every tenant's rows: only a purge of all of them can drop one.
                    cutoffs = now - older_than if older_than is not None else retention_cutoffs(now)
                    dropped = expired_partitions_drop(cutoffs=cutoffs, should_stop=stop.is_set)
            for label, cutoff, scope_tenant in plan:
                scope_dropped = self.dropped_rows(dropped, scope_tenant)
                # Rows already dropped with their partitions are reported (and audited) even after a SIGTERM.
                if stop.is_set() and not scope_dropped:
                    continue
                if dry_run:
                    counts = logs_count(cutoff=cutoff, tenant=scope_tenant)
                else:
                    counts = logs_purge(
                        cutoff=cutoff,
                        tenant=scope_tenant,
                        batch_size=batch_size,
                        should_stop=stop.is_set,
                        actor=self.audit_actor,
                        dropped=scope_dropped,
                    )
                if label is not None:
                    listed = ", ".join(f"{table} {count}" for table, count in counts.items())
                    self.stdout.write(f"{label}: {listed}")
                for table, count in counts.items():
                    totals[table] = totals.get(table, 0) + count
        for table in ("AuditLog", "RequestLog"):
            count = totals.get(table, 0)
            done = "would be deleted (dry run)" if dry_run else "deleted"
            self.stdout.write(f"{table}: {count} {done}")
        if stop.is_set():
            self.stdout.write("stopped by SIGTERM; run the command again to delete the rest")

    @staticmethod
    def dropped_rows(dropped, scope_tenant):
        if scope_tenant is None:
            return dropped.total()
        return 0 if scope_tenant is NO_TENANT else dropped[scope_tenant.id]

    def ensure_partitions(self):
        # The purge runs regularly (cron): a good moment to create the coming months ahead.
        try:
            partitions.ensure_partitions()
        except DatabaseError as exc:
            self.stderr.write(f"request log partitions not created this time: {exc}")
