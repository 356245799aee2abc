"""Who sees and changes what through the REST API: the admin's rules (llmproxy/admin_scoping.py), once.

- a platform admin sees and changes everything;
- a tenant admin sees their tenant's objects and the shared ones (providers
  and model routes without a tenant), and changes only their tenant's; never
  a platform admin's account;
- a user (role user) sees only their own API keys and the usage of those keys.

Every queryset of the API, and every object id accepted in a payload, goes
through visible(): an id of another tenant's object is "not found", whichever
way it arrives.
"""

from dataclasses import dataclass

from audit.models import AuditLog, RequestLog
from keys.models import ApiKey
from providers.models import ModelRoute, Provider
from quotas.models import QuotaLimit, TokenUsageMetric
from tenants.models import Guardrail, GuardrailHit, Tenant, User

ADMIN = User.Role.ADMIN
TENANT_ADMIN = User.Role.TENANT_ADMIN
USER = User.Role.USER


def role_of(user):
    """ADMIN, TENANT_ADMIN, USER or None (anonymous, inactive, or a tenant role without a tenant)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    if user.is_platform_admin:
        return ADMIN
    if user.tenant_id is None:
        return None
    return user.role if user.role in (TENANT_ADMIN, USER) else None


@dataclass(frozen=True)
class Rule:
    tenant_field: str = "tenant"  # the path to the owning tenant; "pk" for Tenant itself
    shared_rows: bool = False  # rows without a tenant are shared: visible to all, changed by admins
    user_field: str | None = None  # the path to the owning user: what a plain user may see
    hide_platform_admins: bool = False


RULES = {
    Tenant: Rule(tenant_field="pk"),
    User: Rule(hide_platform_admins=True),
    ApiKey: Rule(user_field="user"),
    Provider: Rule(shared_rows=True),
    ModelRoute: Rule(shared_rows=True),
    QuotaLimit: Rule(),
    Guardrail: Rule(),
    GuardrailHit: Rule(tenant_field="guardrail__tenant"),
    AuditLog: Rule(),
    RequestLog: Rule(),
    TokenUsageMetric: Rule(user_field="api_key__user"),
}


def rule_for(model):
    try:
        return RULES[model]
    except KeyError:
        raise LookupError(
            f"{model.__name__} has no scoping rule: add one to llmproxy/api/scoping.py"
        ) from None


def visible(model, user, queryset=None):
    """``queryset`` (default: all of ``model``) cut down to what ``user`` may see."""
    rule = rule_for(model)
    qs = queryset if queryset is not None else model._default_manager.all()
    role = role_of(user)
    if role == ADMIN:
        return qs
    if role == TENANT_ADMIN:
        own = qs.filter(**{rule.tenant_field: user.tenant_id})
        if rule.shared_rows:
            own = own | qs.filter(**{f"{rule.tenant_field}__isnull": True})
        if rule.hide_platform_admins:
            own = own.exclude(role=ADMIN)
        return own
    if role == USER and rule.user_field is not None:
        return qs.filter(**{rule.tenant_field: user.tenant_id, rule.user_field: user.pk})
    return qs.none()


def tenant_id_of(obj):
    rule = rule_for(type(obj))
    return obj.pk if rule.tenant_field == "pk" else getattr(obj, f"{rule.tenant_field}_id")


def may_change(obj, user):
    """Whether ``user`` may change or delete ``obj`` (which they can see): not a shared row, unless admin."""
    role = role_of(user)
    if role == ADMIN:
        return True
    if role == TENANT_ADMIN:
        return tenant_id_of(obj) == user.tenant_id and getattr(obj, "role", None) != ADMIN
    if role == USER:
        # Their own key: rotate or revoke it (the views decide which operations a user has).
        return isinstance(obj, ApiKey) and obj.user_id == user.pk and obj.tenant_id == user.tenant_id
    return False
