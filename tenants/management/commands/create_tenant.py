from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from llmproxy.management import ProxyCommand, whole_number_argument
from tenants.models import slug_validator
from tenants.services import tenant_create


def slug_argument(text):
    try:
        slug_validator(text)
    except ValidationError:
        raise CommandError(
            f"malformed slug {text!r}: use lowercase letters, digits and '-' "
            "(not first or last), at most 63 characters"
        )
    return text


class Command(ProxyCommand):
    help = "Create a tenant. SLUG is lowercase letters, digits and '-'."

    def add_arguments(self, parser):
        parser.add_argument("slug", type=slug_argument, help="Unique identifier, e.g. acme.")
        parser.add_argument("--name", default="", help="Display name.")
        parser.add_argument(
            "--cache-ttl",
            type=whole_number_argument(),
            default=0,
            metavar="SECONDS",
            help="Response cache lifetime in seconds (default 0: cache off).",
        )

    def handle(self, *args, slug, name, cache_ttl, **options):
        tenant = tenant_create(slug=slug, name=name, cache_ttl_seconds=cache_ttl, actor=self.audit_actor)
        self.stdout.write(f"created tenant {tenant.slug}")
