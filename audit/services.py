from audit.models import AuditLog


def _actor_fields(actor):
    if actor is None:
        return None, "system"
    if isinstance(actor, str):
        return None, actor
    return actor, f"user:{actor.get_username()}"


def audit_record(*, action, actor=None, target=None, tenant=None, metadata=None, ip=None):
    """Write one AuditLog row. ``actor`` is a User, a label like 'command', or None."""
    user, label = _actor_fields(actor)
    return AuditLog.objects.create(
        actor=user,
        actor_label=label,
        tenant=tenant,
        action=action,
        target_type=target._meta.label if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_repr=str(target)[:300] if target is not None else "",
        metadata=metadata or {},
        ip=ip,
    )
