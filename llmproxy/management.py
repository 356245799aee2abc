"""What the project's manage.py commands share: --tenant lookup, typed arguments, audit actor."""

from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError

from llmproxy.durations import parse_duration
from tenants.models import Tenant


def duration_argument(text):
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise CommandError(str(exc))


def positive_decimal_argument(text):
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise CommandError(f"{text!r} is not a number")
    if not value.is_finite() or value < 0:
        raise CommandError(f"{text!r} must be a number of at least 0")
    return value


class ProxyCommand(BaseCommand):
    """Base for the operators' commands. Errors are CommandError: one line, exit 1, nothing written."""

    # Recorded as the actor of the audit rows a command writes.
    audit_actor = "command"

    def add_tenant_argument(self, parser, *, required=False, help_text="Tenant slug."):
        parser.add_argument("--tenant", required=required, help=help_text)

    def get_tenant(self, slug):
        if slug is None:
            return None
        try:
            return Tenant.objects.get(slug=slug)
        except Tenant.DoesNotExist:
            raise CommandError(f"unknown tenant {slug!r}")
