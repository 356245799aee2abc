"""The audit log's hash chain: each row's HMAC covers its content and its predecessor's hash.

Each tenant has its own chain (number = the tenant's id at write time; 0 for
rows of no tenant), numbered 1, 2, 3... (`seq`) in the order rows were written,
which is also id order because appends to a chain are serialised. The HMAC key
comes from LLMPROXY_AUDIT_CHAIN_KEY, else SECRET_KEY: someone who can write to
the database but does not know it cannot forge a row, nor re-link the chain
after editing or removing one.

What a chain cannot show by itself: the newest rows removed together with a
matching rewrite of the chain head. Export `verify_audit_log`'s output (it
prints each chain's head) elsewhere to close that gap.
"""

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC

from django.conf import settings

PLATFORM_CHAIN = 0
WALK_BATCH = 2000

# Hashed in this order; never reorder or rename (old rows would stop verifying).
HASHED_FIELDS = (
    "chain",
    "seq",
    "created_at",
    "actor_label",
    "action",
    "target_type",
    "target_id",
    "target_repr",
    "metadata",
    "ip",
    "prev_hash",
)


def chain_of(tenant_id):
    return tenant_id if tenant_id is not None else PLATFORM_CHAIN


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def normalize_metadata(metadata):
    # What the database gives back (tuples become lists, keys are strings):
    # the hash is taken over that, so it still matches when read back.
    return json.loads(canonical_json(metadata or {}))


def _hmac_key():
    secret = getattr(settings, "LLMPROXY_AUDIT_CHAIN_KEY", "") or settings.SECRET_KEY
    return hashlib.sha256(b"llmproxy-audit-chain:" + secret.encode()).digest()


def _value(row, name):
    value = getattr(row, name)
    if name == "created_at":
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def row_digest(row):
    content = canonical_json([_value(row, name) for name in HASHED_FIELDS])
    return hmac.new(_hmac_key(), content.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Problem:
    kind: str  # altered | removed | reordered | inserted
    row_id: int | None
    message: str


@dataclass(frozen=True)
class ChainReport:
    chain: int
    rows: int
    head_seq: int
    head_hash: str
    problem: Problem | None


def chain_ids():
    """Every chain that has a head or a row, and rows of no chain (None) if there are any."""
    from audit.models import AuditChain, AuditLog

    ids = set(AuditChain.objects.values_list("chain", flat=True))
    ids |= set(AuditLog.objects.order_by().values_list("chain", flat=True).distinct())
    return sorted(ids, key=lambda c: (c is None, c))


def _walk(rows):
    """The rows in id order, WALK_BATCH at a time (constant memory on any table size)."""
    last_id = 0
    while True:
        batch = list(rows.filter(id__gt=last_id).order_by("id")[:WALK_BATCH])
        yield from batch
        if len(batch) < WALK_BATCH:
            return
        last_id = batch[-1].id


def verify_chain(chain):
    """Walk one chain from its anchor to its head; report the first altered, removed, reordered row."""
    from audit.models import AuditChain, AuditLog

    if chain is None:
        first = AuditLog.objects.filter(chain__isnull=True).order_by("id").first()
        count = AuditLog.objects.filter(chain__isnull=True).count()
        message = f"{count} row(s) outside any chain, first id={first.id}: not written by audit_record"
        problem = Problem("inserted", first.id, message)
        return ChainReport(None, count, 0, "", problem)

    head = AuditChain.objects.filter(chain=chain).first()
    anchor_seq, expected_prev = (head.anchor_seq, head.anchor_hash) if head else (0, "")
    rows = AuditLog.objects.filter(chain=chain)
    expected_seq = anchor_seq + 1
    seen = 0
    for row in _walk(rows):
        seen += 1
        problem = _check(row, rows, expected_seq, expected_prev, anchor_seq)
        if problem is not None:
            return ChainReport(chain, seen, head.seq if head else 0, head.row_hash if head else "", problem)
        expected_seq, expected_prev = row.seq + 1, row.row_hash

    last_seq = expected_seq - 1
    problem = None
    if head is None:
        if seen:
            problem = Problem("altered", None, "the chain's head is missing")
    elif head.seq != last_seq or head.row_hash != expected_prev:
        if head.seq > last_seq:
            problem = Problem(
                "removed",
                None,
                f"the newest {head.seq - last_seq} row(s) are missing (seq {last_seq + 1}..{head.seq})",
            )
        else:
            message = f"the chain's head (seq {head.seq}) does not match its newest row"
            problem = Problem("altered", None, message)
    return ChainReport(chain, seen, head.seq if head else 0, head.row_hash if head else "", problem)


def misplaced_rows(tenant_id):
    """Rows shown as the tenant's that its chain does not hold (written outside audit_record, or moved)."""
    from audit.models import AuditLog

    row = AuditLog.objects.filter(tenant_id=tenant_id).exclude(chain=tenant_id).order_by("id").first()
    if row is None:
        return None
    return Problem("inserted", row.id, f"row id={row.id} is shown as this tenant's but is not in its chain")


def _check(row, rows, expected_seq, expected_prev, anchor_seq):
    where = f"row id={row.id} (seq {row.seq})"
    if row.seq is None or row.seq <= anchor_seq:
        message = f"{where} is not part of the chain (before its anchor {anchor_seq})"
        return Problem("inserted", row.id, message)
    if row.tenant_id is not None and row.tenant_id != row.chain:
        return Problem("altered", row.id, f"{where} was moved to another tenant (tenant id {row.tenant_id})")
    if row_digest(row) != row.row_hash:
        return Problem("altered", row.id, f"{where} was altered: its content does not match its hash")
    if row.seq != expected_seq:
        if row.seq < expected_seq or rows.filter(seq=expected_seq).exists():
            message = f"{where} is stored out of order: seq {expected_seq} was expected"
            return Problem("reordered", row.id, message)
        message = f"row(s) removed before {where}: seq {expected_seq} is missing"
        return Problem("removed", row.id, message)
    if row.prev_hash != expected_prev:
        return Problem("altered", row.id, f"{where} does not link to the row before it")
    return None
