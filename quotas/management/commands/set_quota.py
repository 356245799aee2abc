from django.core.management.base import CommandError

from llmproxy.management import ProxyCommand, positive_decimal_argument, prefix_argument
from quotas.models import QuotaLimit
from quotas.services import plain_number, quota_limit_set

# QuotaLimit.limit is DECIMAL(18, 6).
_MAX_DECIMALS = 6
_MAX_WHOLE_DIGITS = 12


class Command(ProxyCommand):
    help = (
        "Set (or change) the one limit of a scope, metric and period: the tenant's, or with --key or "
        "--user that key's or user's (which must belong to the tenant). Requests and tokens are whole "
        "numbers; cost is USD, decimals allowed. Usage may reach the limit but not pass it."
    )

    def add_arguments(self, parser):
        self.add_tenant_argument(parser, required=True)
        target = parser.add_mutually_exclusive_group()
        target.add_argument("--key", type=prefix_argument, metavar="PREFIX", help="Limit one API key.")
        target.add_argument("--user", metavar="USERNAME", help="Limit one user (all their keys).")
        parser.add_argument("--metric", required=True, choices=QuotaLimit.Metric.values)
        parser.add_argument("--period", required=True, choices=QuotaLimit.Period.values)
        parser.add_argument(
            "--limit",
            required=True,
            type=positive_decimal_argument,
            metavar="N",
            help="Requests or tokens (a whole number) or USD for cost, per period; 0 blocks everything.",
        )

    def handle(self, *args, tenant, key, user, metric, period, limit, **options):
        tenant = self.get_tenant(tenant)
        self.check_limit(metric, limit)
        api_key = self.get_api_key(key, tenant=tenant) if key else None
        owner = self.get_user(user, tenant=tenant) if user else None
        quota, previous = quota_limit_set(
            tenant=tenant,
            metric=metric,
            period=period,
            limit=limit,
            api_key=api_key,
            user=owner,
            actor=self.audit_actor,
        )
        target = f"tenant {tenant.slug}"
        if api_key or owner:
            target = (f"key {api_key.prefix}" if api_key else f"user {owner.username}") + f" of {target}"
        what = f"{plain_number(limit)} {'USD' if metric == QuotaLimit.Metric.COST else metric} per {period}"
        if previous is None:
            self.stdout.write(f"set quota for {target}: {what}")
        elif previous == limit:
            self.stdout.write(f"quota for {target} unchanged: {what}")
        else:
            self.stdout.write(f"changed quota for {target}: {what} (was {plain_number(previous)})")

    def check_limit(self, metric, limit):
        if metric != QuotaLimit.Metric.COST and limit != limit.to_integral_value():
            raise CommandError(f"a {metric} limit is a whole number, not {plain_number(limit)}")
        if -limit.normalize().as_tuple().exponent > _MAX_DECIMALS:
            raise CommandError(f"a limit has at most {_MAX_DECIMALS} decimal places")
        if limit >= 10**_MAX_WHOLE_DIGITS:
            raise CommandError(f"a limit is less than {10**_MAX_WHOLE_DIGITS}")
