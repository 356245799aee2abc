from datetime import timedelta

from django.core.management.base import CommandError

from keys.services import api_key_rotate
from llmproxy.management import ProxyCommand, duration_argument, prefix_argument


class Command(ProxyCommand):
    help = (
        "Give an API key a new secret; the prefix (its identity, limits and usage) stays. The current "
        "secret keeps working for the grace period. Prints 'prefix: lp-AAAAAAAA' and then the new key "
        "alone on the last line."
    )

    def add_arguments(self, parser):
        parser.add_argument("prefix", type=prefix_argument, help="The key's prefix, lp-AAAAAAAA.")
        parser.add_argument(
            "--grace",
            type=duration_argument,
            default=timedelta(hours=24),
            metavar="DURATION",
            help="How long the current secret keeps working, like 15m or 24h (default 24h; 0s ends it now).",
        )

    def handle(self, *args, prefix, grace, **options):
        api_key = self.get_api_key(prefix)
        if api_key.is_revoked:
            raise CommandError(f"API key {prefix} is revoked; create a new one instead")
        if api_key.is_expired():
            raise CommandError(f"API key {prefix} has expired; create a new one instead")
        plain = api_key_rotate(api_key=api_key, grace=grace, actor=self.audit_actor)
        api_key.refresh_from_db()
        if api_key.previous_valid_until:
            self.stderr.write(f"The previous secret works until {api_key.previous_valid_until.isoformat()}.")
        else:
            self.stderr.write("The previous secret no longer works.")
        self.stderr.write("Store this key now: it cannot be shown again.")
        self.stdout.write(f"prefix: {api_key.prefix}")
        self.stdout.write(plain)
