from django.core.management.base import CommandError
from django.utils import timezone

from keys.services import api_key_create
from llmproxy.management import ProxyCommand, positive_duration_argument


def models_argument(text):
    models = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    if not models:
        raise CommandError("--models needs at least one model name, e.g. --models gpt-4o,demo-model")
    return models


class Command(ProxyCommand):
    help = (
        "Create an API key for a tenant. Prints 'prefix: lp-AAAAAAAA' (the key's identity, taken by "
        "rotate_api_key, revoke_api_key and set_quota) and then the whole key alone on the last line. "
        "The key is shown only once."
    )

    def add_arguments(self, parser):
        self.add_tenant_argument(parser, required=True)
        parser.add_argument("--name", default="", help="What the key is for.")
        parser.add_argument(
            "--models",
            type=models_argument,
            metavar="M1,M2",
            help="Comma-separated public model names the key may use (default: all).",
        )
        parser.add_argument(
            "--expires-in",
            type=positive_duration_argument,
            metavar="DURATION",
            help="Lifetime like 30s, 15m, 24h or 90d (default: never expires).",
        )
        parser.add_argument("--user", metavar="USERNAME", help="Owner; must belong to the tenant.")

    def handle(self, *args, tenant, name, models, expires_in, user, **options):
        tenant = self.get_tenant(tenant)
        owner = self.get_user(user, tenant=tenant) if user else None
        if len(name) > 200:
            raise CommandError("--name is at most 200 characters")
        api_key, plain = api_key_create(
            tenant=tenant,
            name=name,
            allowed_models=models,
            user=owner,
            expires_at=timezone.now() + expires_in if expires_in else None,
            actor=self.audit_actor,
        )
        self.stderr.write("Store this key now: it cannot be shown again.")
        self.stdout.write(f"prefix: {api_key.prefix}")
        self.stdout.write(plain)
