import threading
from collections.abc import Iterable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import chain as audit_chain
from audit.models import AuditChain, AuditLog
from keys import secrets

# The client address of the request being served, for audit rows written by
# services that do not know about requests (keys.services, tenants.services...).
_request_ip: ContextVar[str | None] = ContextVar("audit_request_ip", default=None)


@contextmanager
def audit_ip(ip):
    """Rows recorded inside this block without an explicit ip get this one."""
    token = _request_ip.set(ip or None)
    try:
        yield
    finally:
        _request_ip.reset(token)


def _actor_fields(actor):
    if actor is None:
        return None, "system"
    if isinstance(actor, str):
        return None, actor
    return actor, f"user:{actor.get_username()}"


def _locked_head(chain):
    # The lock on the head row serialises appends to one chain (PostgreSQL);
    # SQLite serialises all writers anyway. Held until the caller's
    # transaction ends, which is why chains are per tenant.
    head = AuditChain.objects.select_for_update().filter(chain=chain).first()
    if head is None:
        try:
            with transaction.atomic():
                AuditChain.objects.create(chain=chain)
        except IntegrityError:
            pass  # a concurrent writer created it first
        head = AuditChain.objects.select_for_update().get(chain=chain)
    return head


_ip_field = AuditLog._meta.get_field("ip")


def _append(*, tenant_id, **fields):
    chain = audit_chain.chain_of(tenant_id)
    head = _locked_head(chain)
    row = AuditLog(
        tenant_id=tenant_id,
        chain=chain,
        seq=head.seq + 1,
        prev_hash=head.row_hash,
        **fields,
    )
    # Hashed as the database will give them back.
    row.metadata = audit_chain.normalize_metadata(row.metadata)
    row.ip = _ip_field.get_prep_value(row.ip) or None
    row.save()  # sets created_at, which the hash covers
    row.row_hash = audit_chain.row_digest(row)
    AuditLog.objects.filter(pk=row.pk).update(row_hash=row.row_hash)
    AuditChain.objects.filter(pk=head.pk).update(seq=row.seq, row_hash=row.row_hash)
    return row


@transaction.atomic
def audit_record(*, action, actor=None, target=None, tenant=None, metadata=None, ip=None):
    """Append one AuditLog row to its tenant's chain. ``actor`` is a User, a label like 'command', or None."""
    user, label = _actor_fields(actor)
    return _append(
        tenant_id=tenant.pk if tenant is not None else None,
        actor=user,
        actor_label=label,
        action=action,
        target_type=target._meta.label if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_repr=str(target)[:300] if target is not None else "",
        metadata=metadata or {},
        ip=ip if ip is not None else _request_ip.get(),
    )


# --- Security events: failed key authentications, aggregated ----------------------


@dataclass
class AuthFailureBucket:
    """Failed authentications from one source in one UTC minute, against one tenant's key or none."""

    minute: datetime
    ip: str | None  # None: the sources past AuthFailureTally.MAX_BUCKETS, counted together
    tenant_id: int | None  # the tenant whose key prefix was tried (wrong secret, revoked...), else None
    count: int = 0
    reasons: dict = field(default_factory=dict)
    key_prefixes: list = field(default_factory=list)


def _window_start(now):
    from django.conf import settings

    window = settings.LLMPROXY_AUTH_AUDIT_WINDOW_SECONDS
    seconds = int(now.timestamp()) // window * window
    return datetime.fromtimestamp(seconds, UTC)


class AuthFailureTally:
    """Counts the gateway keeps in memory and drains into record_auth_failures from its batch writer.

    One audit row per source, minute and tenant instead of one per refused
    request, so a flood of bad keys costs a few rows a minute.
    """

    MAX_BUCKETS = 1000
    MAX_PREFIXES = 5

    def __init__(self):
        self._buckets = {}
        self._lock = threading.Lock()

    def add(self, *, ip, reason, prefix=None, tenant_id=None, now=None):
        now = now or timezone.now()
        minute = _window_start(now)
        # Only a well-formed prefix is kept: whatever else was sent may be a secret.
        prefix = prefix if prefix and secrets.PREFIX_RE.match(prefix) else None
        with self._lock:
            key = (minute, ip, tenant_id)
            if key not in self._buckets and len(self._buckets) >= self.MAX_BUCKETS:
                key = (minute, None, tenant_id)
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = AuthFailureBucket(minute, key[1], tenant_id)
            bucket.count += 1
            bucket.reasons[reason] = bucket.reasons.get(reason, 0) + 1
            if prefix and prefix not in bucket.key_prefixes and len(bucket.key_prefixes) < self.MAX_PREFIXES:
                bucket.key_prefixes.append(prefix)

    def pending(self) -> bool:
        return bool(self._buckets)

    def drain(self, *, complete_only=False, now=None):
        """The buckets to write; with ``complete_only``, only those whose window has ended.

        Written once their window is over, each source costs one audit row per
        window however often the batch writer runs.
        """
        with self._lock:
            if not complete_only:
                buckets, self._buckets = list(self._buckets.values()), {}
                return buckets
            current = _window_start(now or timezone.now())
            done = [k for k, b in self._buckets.items() if b.minute < current]
            return [self._buckets.pop(k) for k in done]


@transaction.atomic
def record_auth_failures(buckets: Iterable[AuthFailureBucket]):
    """Write one `security.auth_failed` audit row per bucket; return how many were written."""
    from tenants.models import Tenant

    buckets = [b for b in buckets if b.count > 0]
    tenant_ids = {b.tenant_id for b in buckets if b.tenant_id is not None}
    # A tenant deleted since the failure: its row goes to the platform chain.
    existing = set(Tenant.objects.filter(id__in=tenant_ids).values_list("id", flat=True))
    rows = [(b.tenant_id if b.tenant_id in existing else None, b) for b in buckets]
    # Chains locked in one order by every writer: two batches cannot deadlock.
    rows.sort(key=lambda r: (audit_chain.chain_of(r[0]), r[1].minute, r[1].ip or ""))
    for tenant_id, bucket in rows:
        _append(
            tenant_id=tenant_id,
            actor=None,
            actor_label="gateway",
            action="security.auth_failed",
            metadata={
                "minute": bucket.minute.isoformat(),
                "count": bucket.count,
                "reasons": dict(sorted(bucket.reasons.items())),
                "key_prefixes": list(bucket.key_prefixes),
                "all_other_sources": bucket.ip is None,
            },
            ip=bucket.ip,
        )
    return len(buckets)
