from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.services import audit_record
from keys.models import ApiKey
from keys.services import api_key_create
from providers.models import ModelRoute, Provider
from providers.services import model_route_create, provider_create
from tenants.models import Tenant, User

# What tenant_update may change, and how the audit row names it.
TENANT_UPDATABLE_FIELDS = ("name", "is_active", "cache_ttl_seconds", "retention_days")


@transaction.atomic
def tenant_create(*, slug, name="", cache_ttl_seconds=0, actor=None):
    if Tenant.objects.filter(slug=slug).exists():
        raise ValidationError(f"tenant {slug!r} already exists")
    tenant = Tenant(slug=slug, name=name, cache_ttl_seconds=cache_ttl_seconds)
    tenant.full_clean()
    tenant.save()
    audit_record(
        actor=actor,
        action="tenant.create",
        target=tenant,
        tenant=tenant,
        metadata={"name": name, "cache_ttl_seconds": cache_ttl_seconds},
    )
    return tenant


@transaction.atomic
def tenant_update(*, tenant, actor=None, **changes):
    """Apply the given field values; return {field: [old, new]} of what really changed."""
    unknown = set(changes) - set(TENANT_UPDATABLE_FIELDS)
    if unknown:
        raise ValueError(f"tenant_update cannot change {sorted(unknown)}")
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    changed = {}
    for field, value in changes.items():
        old = getattr(tenant, field)
        if old != value:
            changed[field] = [old, value]
            setattr(tenant, field, value)
    if not changed:
        return changed
    tenant.full_clean()
    tenant.save(update_fields=[*changed, "updated_at"])
    audit_record(actor=actor, action="tenant.update", target=tenant, tenant=tenant, metadata=changed)
    return changed


@transaction.atomic
def user_create(*, username, role, tenant=None, password=None, actor=None):
    """Create a user; without a password the account cannot log in anywhere."""
    if User.objects.filter(username=username).exists():
        raise ValidationError(f"user {username!r} already exists")
    if role == User.Role.ADMIN and tenant is not None:
        raise ValidationError("a platform admin belongs to no tenant")
    user = User(username=username, role=role, tenant=tenant)
    if password:
        password_validation.validate_password(password, user)
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean()
    user.save()
    audit_record(
        actor=actor,
        action="user.create",
        target=user,
        tenant=tenant,
        metadata={"role": role, "password_set": bool(password)},
    )
    return user


DEMO_TENANT = "demo"
DEMO_PROVIDER = "mock"
DEMO_MODEL = "demo-model"
DEMO_UPSTREAM_MODEL = "mock-1"
DEMO_KEY_NAME = "demo"


@transaction.atomic
def demo_bootstrap(*, actor=None):
    """Create what `make run` needs to answer a first request, unless it exists.

    Returns (descriptions of what was created, the demo key, its plain text
    when it was created now or None).
    """
    created = []
    tenant = Tenant.objects.filter(slug=DEMO_TENANT).first()
    if tenant is None:
        tenant = tenant_create(slug=DEMO_TENANT, name="Demo", actor=actor)
        created.append(f"tenant {DEMO_TENANT}")
    provider = Provider.objects.filter(name=DEMO_PROVIDER, tenant__isnull=True).first()
    if provider is None:
        provider = provider_create(name=DEMO_PROVIDER, kind=Provider.Kind.MOCK, options={}, actor=actor)
        created.append(f"shared provider {DEMO_PROVIDER} (kind mock)")
    if not ModelRoute.objects.filter(model=DEMO_MODEL, tenant__isnull=True).exists():
        route = model_route_create(
            model=DEMO_MODEL, provider=provider, upstream_model=DEMO_UPSTREAM_MODEL, actor=actor
        )
        created.append(f"shared route {route}")
    api_key = (
        ApiKey.objects.filter(tenant=tenant, name=DEMO_KEY_NAME, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        .first()
    )
    plain = None
    if api_key is None:
        api_key, plain = api_key_create(tenant=tenant, name=DEMO_KEY_NAME, actor=actor)
        created.append(f"API key {api_key.prefix} named {DEMO_KEY_NAME}")
    return created, api_key, plain
