"""Writes of guardrails that the command and the REST API share."""

from django.core.exceptions import ValidationError
from django.db import transaction

from audit.services import audit_record
from tenants.models import Guardrail


@transaction.atomic
def guardrail_create(
    *,
    tenant,
    name,
    detector,
    direction,
    action,
    shadow=False,
    pattern="",
    words=(),
    models=(),
    api_keys=(),
    is_active=True,
    actor=None,
) -> Guardrail:
    if Guardrail.objects.filter(tenant=tenant, name=name).exists():
        raise ValidationError({"name": f"guardrail {name!r} already exists in tenant {tenant.slug}"})
    for api_key in api_keys:
        if api_key.tenant_id != tenant.pk:
            raise ValidationError({"api_keys": f"API key {api_key.prefix} belongs to another tenant"})
    guardrail = Guardrail(
        tenant=tenant,
        name=name,
        detector=detector,
        direction=direction,
        action=action,
        shadow=shadow,
        pattern=pattern,
        words=list(words),
        models=list(models),
        is_active=is_active,
    )
    guardrail.full_clean()
    guardrail.save()
    guardrail.api_keys.set(api_keys)
    audit_record(
        actor=actor,
        action="guardrail.create",
        target=guardrail,
        tenant=tenant,
        # Not the pattern or the words: they may name what the tenant wants kept secret.
        metadata={
            "detector": detector,
            "direction": direction,
            "action": action,
            "shadow": shadow,
            "is_active": is_active,
            "models": list(models),
            "api_keys": [k.prefix for k in api_keys],
        },
    )
    return guardrail
