"""What the guardrails did: Prometheus counters on the request path, daily counts and audit rows off it.

A request records at most one hit per guardrail (a prompt with three email
addresses is one masked request). The gateway carries its hits in its usage
record; the usage batch writer hands them to ``record_hits``, which adds them
to the daily ``GuardrailHit`` counters and writes one audit row per flagging
guardrail and batch (not per request: a busy flag rule must not flood the
audit chain). Matched text is never stored.
"""

from collections import Counter as Tally
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import IntegrityError, transaction
from django.db.models import F
from prometheus_client import Counter

HITS = Counter(
    "llmproxy_guardrail_hits",
    "Requests a guardrail blocked, masked or flagged (shadow=true: would have).",
    ["tenant", "guardrail", "action", "shadow"],
)
REGEX_TIMEOUTS = Counter(
    "llmproxy_guardrail_regex_timeouts",
    "Scans of an operator's regular expression cut off by their time bound (the rule was skipped).",
    ["tenant", "guardrail"],
)

# Request ids kept in one audit row: enough to find examples in the request log.
AUDITED_REQUEST_IDS = 20
AUDITED_KEYS = 20


@dataclass(frozen=True, slots=True)
class Hit:
    guardrail_id: int
    tenant_id: int
    rule: str
    detector: str
    action: str  # what the rule does; with shadow, what it would have done
    shadow: bool
    direction: str  # "request" or "response": where it fired first
    request_id: str
    key_prefix: str
    at: datetime


def record_hits(hits: Iterable[Hit]) -> int:
    """Add hits to the daily counters and audit the flags (sync; inside the caller's transaction if any)."""
    from audit import chain as audit_chain
    from audit.services import audit_record
    from tenants.models import Guardrail, GuardrailHit

    hits = list(hits)
    if not hits:
        return 0
    # A guardrail deleted while its hits waited in the buffer: drop them.
    guardrails = Guardrail.objects.select_related("tenant").in_bulk({h.guardrail_id for h in hits})
    counts = Tally()
    flagged = defaultdict(list)
    for hit in hits:
        if hit.guardrail_id not in guardrails:
            continue
        counts[(hit.guardrail_id, hit.at.astimezone(UTC).date(), hit.action, hit.shadow)] += 1
        if hit.shadow or hit.action == Guardrail.Action.FLAG:
            flagged[hit.guardrail_id].append(hit)
    with transaction.atomic():
        # Rows and chains in one order in every writer: two processes' batches cannot deadlock.
        for (guardrail_id, day, action, shadow), count in sorted(counts.items()):
            _add(GuardrailHit, guardrail_id, day, action, shadow, count)
        order = sorted(flagged, key=lambda g: (audit_chain.chain_of(guardrails[g].tenant_id), g))
        for guardrail_id in order:
            guardrail, batch = guardrails[guardrail_id], flagged[guardrail_id]
            audit_record(
                actor="gateway",
                action="guardrail.flag",
                target=guardrail,
                tenant=guardrail.tenant,
                metadata={
                    "detector": batch[0].detector,
                    "action": batch[0].action,
                    "shadow": batch[0].shadow,
                    "requests": len(batch),
                    "directions": sorted({h.direction for h in batch}),
                    "request_ids": [h.request_id for h in batch[:AUDITED_REQUEST_IDS]],
                    "key_prefixes": sorted({h.key_prefix for h in batch if h.key_prefix})[:AUDITED_KEYS],
                    "first_at": min(h.at for h in batch).isoformat(),
                    "last_at": max(h.at for h in batch).isoformat(),
                },
            )
    return sum(counts.values())


def _add(model, guardrail_id, day, action, shadow, count):
    lookup = {"guardrail_id": guardrail_id, "day": day, "action": action, "shadow": shadow}
    # Race-safe across processes: increment in SQL; create only when no row
    # exists, and if another process created it first, increment that one.
    if model.objects.filter(**lookup).update(count=F("count") + count):
        return
    try:
        with transaction.atomic():
            model.objects.create(count=count, **lookup)
    except IntegrityError:
        model.objects.filter(**lookup).update(count=F("count") + count)
