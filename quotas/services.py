from django.db import transaction

from audit.services import audit_record
from quotas.models import QuotaLimit


def plain_number(number):
    """1000 rather than 1.0E+3 or 1000.000000; 12.5 rather than 12.500000."""
    text = f"{number:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@transaction.atomic
def quota_limit_set(*, tenant, metric, period, limit, api_key=None, user=None, actor=None):
    """Set the one limit of this scope, metric and period; return (quota, previous limit or None).

    The scope is the key when one is given, else the user, else the whole tenant.
    """
    if api_key is not None and user is not None:
        raise ValueError("a limit applies to a key or to a user, not both")
    scope = QuotaLimit.Scope.KEY if api_key else QuotaLimit.Scope.USER if user else QuotaLimit.Scope.TENANT
    # Locked so two concurrent updates of one limit cannot both audit the same old value.
    quota = (
        QuotaLimit.objects.select_for_update()
        .filter(tenant=tenant, scope=scope, user=user, api_key=api_key, metric=metric, period=period)
        .first()
    )
    previous = quota.limit if quota else None
    if quota is None:
        quota = QuotaLimit(
            tenant=tenant, scope=scope, user=user, api_key=api_key, metric=metric, period=period
        )
    elif quota.limit == limit:
        return quota, previous
    quota.limit = limit
    quota.full_clean()
    quota.save()
    audit_record(
        actor=actor,
        action="quota_limit.set",
        target=quota,
        tenant=tenant,
        metadata={
            "scope": scope,
            "metric": metric,
            "period": period,
            "limit": plain_number(limit),
            "previous_limit": plain_number(previous) if previous is not None else None,
            "api_key": api_key.prefix if api_key else None,
            "user": user.get_username() if user else None,
        },
    )
    return quota, previous
