from llmproxy.configfile.export import export_config
from llmproxy.management import ProxyCommand


class Command(ProxyCommand):
    help = (
        "Write the current tenants, providers, model routes, quotas, model policies, guardrails and named "
        "API keys as a YAML config "
        "file on stdout, which apply_config reads back without a change. Credentials appear only as the "
        "environment variables that hold them."
    )

    def add_arguments(self, parser):
        self.add_tenant_argument(
            parser, help_text="Only this tenant's objects (its own, not the shared ones)."
        )

    def handle(self, *args, tenant, **options):
        if tenant is not None:
            self.get_tenant(tenant)  # an unknown slug is an error, not an empty file
        self.stdout.write(export_config(tenant=tenant), ending="")
