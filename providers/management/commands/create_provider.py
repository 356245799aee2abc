import json
import math

from django.core.management.base import CommandError

from llmproxy.management import ProxyCommand, env_var_argument
from providers.models import Provider
from providers.services import provider_create


def timeout_argument(text):
    try:
        value = float(text)
    except ValueError:
        raise CommandError(f"timeout {text!r} is not a number of seconds")
    if not math.isfinite(value) or value < 0.1:
        raise CommandError(f"timeout {text!r} must be at least 0.1 seconds")
    return value


def option_argument(text):
    """KEY=VALUE; VALUE is read as JSON (50, true, [1, 2], "x"), else taken as a plain string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise CommandError(f"option {text!r} is not KEY=VALUE")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


class Command(ProxyCommand):
    help = (
        "Create an upstream provider, shared by all tenants or (with --tenant) one tenant's own. "
        "--base-url is what the provider's own SDK takes, e.g. https://api.openai.com/v1."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="Unique within its scope (shared, or the tenant's).")
        parser.add_argument("--kind", required=True, choices=Provider.Kind.values)
        parser.add_argument("--base-url", default="", metavar="URL", help="Required except for --kind mock.")
        parser.add_argument(
            "--api-key-env",
            type=env_var_argument,
            metavar="VAR",
            help="Environment variable of the proxy process holding the credential, read per request.",
        )
        parser.add_argument("--api-version", default="", help="Azure OpenAI api-version (--kind azure only).")
        parser.add_argument(
            "--timeout",
            type=timeout_argument,
            metavar="SECONDS",
            help="Bounds one attempt (default 60): to the last byte of an answer, the first of a stream.",
        )
        parser.add_argument(
            "--option",
            type=option_argument,
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="A kind-specific option, repeatable; VALUE is JSON when it parses, else a string "
            "(e.g. --option latency_ms=50 for mock).",
        )
        self.add_tenant_argument(parser, help_text="Owning tenant's slug; omit for a shared provider.")

    def handle(
        self, *args, name, kind, base_url, api_key_env, api_version, timeout, option, tenant, **options
    ):
        tenant = self.get_tenant(tenant)
        provider_options = {}
        for key, value in option:
            if key in provider_options:
                raise CommandError(f"option {key!r} given twice")
            provider_options[key] = value
        provider = provider_create(
            name=name,
            kind=kind,
            base_url=base_url,
            api_key_env=api_key_env or "",
            api_version=api_version,
            timeout_seconds=timeout,
            options=provider_options,
            tenant=tenant,
            actor=self.audit_actor,
        )
        scope = f"for tenant {tenant.slug}" if tenant else "shared"
        self.stdout.write(f"created provider {provider.name} ({provider.kind}, {scope})")
