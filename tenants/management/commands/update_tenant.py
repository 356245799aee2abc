import argparse

from django.core.management.base import CommandError

from llmproxy.management import ProxyCommand, whole_number_argument
from tenants.services import tenant_update


class Command(ProxyCommand):
    help = "Change a tenant's name, active flag, response cache lifetime or log retention."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="The tenant's slug.")
        parser.add_argument("--name", help="Display name.")
        parser.add_argument(
            "--active",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="--no-active refuses every request of the tenant's keys; --active lets them in again.",
        )
        parser.add_argument(
            "--cache-ttl",
            type=whole_number_argument(),
            metavar="SECONDS",
            help="Response cache lifetime in seconds; 0 turns the cache off.",
        )
        parser.add_argument(
            "--retention-days",
            type=whole_number_argument(minimum=1),
            metavar="N",
            help="Audit and request logs older than this many days are purged.",
        )

    def handle(self, *args, slug, name, active, cache_ttl, retention_days, **options):
        tenant = self.get_tenant(slug)
        given = {
            "name": name,
            "is_active": active,
            "cache_ttl_seconds": cache_ttl,
            "retention_days": retention_days,
        }
        changes = {field: value for field, value in given.items() if value is not None}
        if not changes:
            raise CommandError(
                "nothing to change: give --name, --active/--no-active, --cache-ttl or --retention-days"
            )
        changed = tenant_update(tenant=tenant, actor=self.audit_actor, **changes)
        if not changed:
            self.stdout.write(f"tenant {tenant.slug} unchanged")
            return
        summary = ", ".join(f"{field} {old!r} -> {new!r}" for field, (old, new) in changed.items())
        self.stdout.write(f"updated tenant {tenant.slug}: {summary}")
