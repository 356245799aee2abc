from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from keys import secrets
from keys.models import ApiKey


@transaction.atomic
def api_key_create(*, tenant, name="", allowed_models=None, expires_at=None, user=None, actor=None):
    """Create a key; return (api_key, plain_key). The plain key is never stored."""
    while True:
        prefix = secrets.new_prefix()
        if not ApiKey.objects.filter(prefix=prefix).exists():
            break
    plain = secrets.compose(prefix, secrets.new_secret())
    api_key = ApiKey.objects.create(
        prefix=prefix,
        digest=secrets.digest(plain),
        name=name,
        tenant=tenant,
        user=user,
        allowed_models=list(allowed_models or []),
        expires_at=expires_at,
    )
    audit_record(
        actor=actor,
        action="api_key.create",
        target=api_key,
        tenant=tenant,
        metadata={
            "name": name,
            "allowed_models": api_key.allowed_models,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return api_key, plain


@transaction.atomic
def api_key_rotate(*, api_key, grace=timedelta(hours=24), actor=None):
    """Give the key a new secret; the current one keeps working for ``grace``.

    Rotating again during a grace period ends the older secret at once: only
    the current and the newest secret are ever valid together.
    """
    api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    now = timezone.now()
    plain = secrets.compose(api_key.prefix, secrets.new_secret())
    api_key.previous_digest = api_key.digest if grace > timedelta(0) else ""
    api_key.previous_valid_until = now + grace if grace > timedelta(0) else None
    api_key.digest = secrets.digest(plain)
    api_key.rotated_at = now
    api_key.save(
        update_fields=["previous_digest", "previous_valid_until", "digest", "rotated_at", "updated_at"]
    )
    audit_record(
        actor=actor,
        action="api_key.rotate",
        target=api_key,
        tenant=api_key.tenant,
        metadata={"grace_seconds": int(grace.total_seconds())},
    )
    return plain


@transaction.atomic
def api_key_revoke(*, api_key, actor=None):
    """Revoke a key; returns False when it was already revoked."""
    updated = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), updated_at=timezone.now()
    )
    if updated:
        api_key.refresh_from_db()
        audit_record(actor=actor, action="api_key.revoke", target=api_key, tenant=api_key.tenant)
    return bool(updated)
