from django.core.exceptions import ValidationError
from django.db import transaction

from audit.services import audit_record
from providers.models import ModelRoute, Provider
from providers.validators import validate_base_url


def _scope(tenant):
    return f"tenant {tenant.slug}" if tenant is not None else "the shared scope"


@transaction.atomic
def provider_create(
    *,
    name,
    kind,
    base_url="",
    api_key_env="",
    api_version="",
    timeout_seconds=None,
    options=None,
    tenant=None,
    actor=None,
):
    if Provider.objects.filter(name=name, tenant=tenant).exists():
        raise ValidationError(f"provider {name!r} already exists in {_scope(tenant)}")
    if kind != Provider.Kind.MOCK and not base_url:
        raise ValidationError(f"a base URL is required for the kind {kind}")
    if base_url:
        validate_base_url(base_url)
    if api_version and kind != Provider.Kind.AZURE:
        raise ValidationError("an API version applies only to the kind azure")
    provider = Provider(
        name=name,
        kind=kind,
        base_url=base_url,
        api_key_env=api_key_env,
        api_version=api_version,
        options=options or {},
        tenant=tenant,
    )
    if timeout_seconds is not None:
        provider.timeout_seconds = timeout_seconds
    # base_url was checked above, more leniently than URLField would.
    provider.full_clean(exclude=["base_url"])
    provider.save()
    audit_record(
        actor=actor,
        action="provider.create",
        target=provider,
        tenant=tenant,
        metadata={
            "kind": kind,
            "base_url": base_url,
            "api_key_env": api_key_env,
            "api_version": api_version,
            "timeout_seconds": provider.timeout_seconds,
            "options": provider.options,
        },
    )
    return provider


def provider_for_route(*, name, tenant=None):
    """The provider a route of ``tenant`` (None: shared) names: the tenant's own first, then a shared one."""
    candidates = Provider.objects.filter(name=name)
    if tenant is not None:
        own = candidates.filter(tenant=tenant).first()
        if own is not None:
            return own
    shared = candidates.filter(tenant__isnull=True).first()
    if shared is not None:
        return shared
    if tenant is None and candidates.exists():
        raise ValidationError(f"a shared route needs a shared provider; {name!r} belongs to a tenant")
    where = f"tenant {tenant.slug}'s providers or the shared ones" if tenant else "the shared providers"
    raise ValidationError(f"unknown provider {name!r} (looked in {where})")


@transaction.atomic
def model_route_create(
    *,
    model,
    provider,
    upstream_model,
    priority=0,
    weight=1,
    input_price=None,
    output_price=None,
    tenant=None,
    actor=None,
):
    duplicate = ModelRoute.objects.filter(
        model=model, provider=provider, upstream_model=upstream_model, tenant=tenant
    )
    if duplicate.exists():
        raise ValidationError(
            f"a route {model} -> {provider.name}:{upstream_model} already exists in {_scope(tenant)}"
        )
    route = ModelRoute(
        model=model,
        provider=provider,
        upstream_model=upstream_model,
        priority=priority,
        weight=weight,
        tenant=tenant,
    )
    if input_price is not None:
        route.input_price = input_price
    if output_price is not None:
        route.output_price = output_price
    route.full_clean()
    route.save()
    audit_record(
        actor=actor,
        action="model_route.create",
        target=route,
        tenant=tenant,
        metadata={
            "model": model,
            "provider": provider.name,
            "upstream_model": upstream_model,
            "priority": priority,
            "weight": weight,
            "input_price": str(route.input_price),
            "output_price": str(route.output_price),
        },
    )
    return route
