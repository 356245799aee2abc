"""Which quota limits apply to a request made with an API key."""

from django.db.models import Q

from .limiter_types import Limit
from .models import QuotaLimit


def limits_for_key(api_key) -> list[Limit]:
    """The key's tenant's limits, its user's (if it has one) and its own, in one query."""
    applies = Q(scope=QuotaLimit.Scope.TENANT) | Q(scope=QuotaLimit.Scope.KEY, api_key_id=api_key.pk)
    if api_key.user_id is not None:
        applies |= Q(scope=QuotaLimit.Scope.USER, user_id=api_key.user_id)
    rows = QuotaLimit.objects.filter(applies, tenant_id=api_key.tenant_id).values_list(
        "id", "tenant_id", "scope", "metric", "period", "limit"
    )
    return [Limit(*row) for row in rows]


def as_limit(quota: QuotaLimit) -> Limit:
    return Limit(quota.id, quota.tenant_id, quota.scope, quota.metric, quota.period, quota.limit)
