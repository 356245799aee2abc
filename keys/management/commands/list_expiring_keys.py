from datetime import timedelta

from django.utils import timezone

from keys.models import ApiKey
from llmproxy.management import ProxyCommand, positive_duration_argument


def _remaining(delta):
    """Two units at most: 2d 3h, 5h 10m, 45m, 30s."""
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else f"{seconds}s"


class Command(ProxyCommand):
    help = (
        "List the API keys (not revoked) that expire within --within (default 7d), soonest first: "
        "prefix, tenant, expiry time (UTC), time left and name."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--within",
            type=positive_duration_argument,
            default=timedelta(days=7),
            metavar="DURATION",
            help="How far ahead to look, like 24h or 7d (default 7d).",
        )
        self.add_tenant_argument(parser, help_text="Only this tenant's keys.")

    def handle(self, *args, within, tenant, **options):
        tenant = self.get_tenant(tenant)
        now = timezone.now()
        keys = (
            ApiKey.objects.select_related("tenant")
            .filter(revoked_at__isnull=True, expires_at__gt=now, expires_at__lte=now + within)
            .order_by("expires_at", "prefix")
        )
        if tenant is not None:
            keys = keys.for_tenant(tenant)
        label = self.format_duration(within)
        count = 0
        for key in keys.iterator():
            count += 1
            self.stdout.write(
                f"{key.prefix}  {key.tenant.slug}  {key.expires_at.isoformat(timespec='seconds')}  "
                f"in {_remaining(key.expires_at - now)}  {key.name}".rstrip()
            )
        where = f" in tenant {tenant.slug}" if tenant else ""
        self.stdout.write(f"{count} API key(s){where} expire within {label}")

    @staticmethod
    def format_duration(delta):
        seconds = int(delta.total_seconds())
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds % size == 0:
                return f"{seconds // size}{unit}"
        return f"{seconds}s"
