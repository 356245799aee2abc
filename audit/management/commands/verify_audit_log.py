from django.core.management.base import CommandError

from audit.chain import PLATFORM_CHAIN, chain_ids, misplaced_rows, verify_chain
from llmproxy.management import ProxyCommand
from tenants.models import Tenant


class Command(ProxyCommand):
    help = (
        "Check the audit log's hash chains (one per tenant, one for platform rows) and report the first "
        "altered, removed, reordered or inserted row of each; exits non-zero when any is found. "
        "Prints each chain's head: keep that output elsewhere to detect a rewrite of the newest rows."
    )

    def add_arguments(self, parser):
        self.add_tenant_argument(parser, help_text="Check only this tenant's chain.")

    def handle(self, *args, tenant, **options):
        tenant = self.get_tenant(tenant)
        chains = [tenant.pk] if tenant is not None else chain_ids()
        names = dict(Tenant.objects.filter(id__in=[c for c in chains if c]).values_list("id", "slug"))
        failures = []
        for chain in chains:
            report = verify_chain(chain)
            problem = report.problem
            if problem is None and tenant is not None:
                problem = misplaced_rows(tenant.pk)
            name = self.chain_name(chain, names)
            if problem is None:
                self.stdout.write(
                    f"{name}: ok, {report.rows} rows, head seq {report.head_seq} {report.head_hash or '-'}"
                )
            else:
                self.stdout.write(f"{name}: {problem.kind.upper()}: {problem.message}")
                failures.append(f"{name}: {problem.kind}")
        if failures:
            raise CommandError(f"audit log verification failed ({'; '.join(failures)})")

    @staticmethod
    def chain_name(chain, names):
        if chain is None:
            return "rows outside any chain"
        if chain == PLATFORM_CHAIN:
            return "platform chain"
        slug = names.get(chain)
        return f"tenant {slug}" if slug else f"tenant id {chain} (deleted)"
