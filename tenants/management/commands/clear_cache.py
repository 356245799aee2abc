from django.db.models import F

from llmproxy.management import ProxyCommand
from tenants.models import Tenant


class Command(ProxyCommand):
    help = "Empty the response cache of one tenant (--tenant) or of all tenants."

    def add_arguments(self, parser):
        self.add_tenant_argument(parser, help_text="Only this tenant's cache.")

    def handle(self, *args, **options):
        from audit.services import audit_record

        tenant = self.get_tenant(options["tenant"])
        tenants = Tenant.objects.filter(pk=tenant.pk) if tenant else Tenant.objects.all()
        # Entries are keyed by the tenant's generation: bumping it orphans them in
        # every proxy process at once (they expire on their TTL).
        count = tenants.update(cache_generation=F("cache_generation") + 1)
        for each in tenants:
            audit_record(actor=self.audit_actor, action="tenant.clear_cache", target=each, tenant=each)
        self.stdout.write(f"cleared the response cache of {count} tenant{'s' if count != 1 else ''}")
