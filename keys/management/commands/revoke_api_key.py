from keys.services import api_key_revoke
from llmproxy.management import ProxyCommand, prefix_argument


class Command(ProxyCommand):
    help = (
        "Revoke an API key at once (both its current and any previous secret). Revoking a key that is "
        "already revoked changes nothing, says so and exits 0, so scripts can repeat it."
    )

    def add_arguments(self, parser):
        parser.add_argument("prefix", type=prefix_argument, help="The key's prefix, lp-AAAAAAAA.")

    def handle(self, *args, prefix, **options):
        api_key = self.get_api_key(prefix)
        if api_key_revoke(api_key=api_key, actor=self.audit_actor):
            self.stdout.write(f"revoked API key {prefix}")
        else:
            api_key.refresh_from_db()
            self.stdout.write(f"API key {prefix} was already revoked at {api_key.revoked_at.isoformat()}")
