"""record_hits, called by the usage batch writer: daily counters per guardrail, and flags in the audit log."""

from datetime import UTC, datetime, timedelta

import pytest

from audit.models import AuditLog
from llmproxy.guardrails.hits import Hit, record_hits
from tenants.models import Guardrail, GuardrailHit

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def hit(guardrail, request_id, *, at=NOON, direction="request"):
    return Hit(
        guardrail_id=guardrail.id,
        tenant_id=guardrail.tenant_id,
        rule=guardrail.name,
        detector=guardrail.detector,
        action=guardrail.action,
        shadow=guardrail.shadow,
        direction=direction,
        request_id=request_id,
        key_prefix="lp-AbCd1234",
        at=at,
    )


def counters():
    return {(h.guardrail.name, str(h.day), h.action, h.shadow): h.count for h in GuardrailHit.objects.all()}


def test_hits_add_up_per_guardrail_day_and_mode_across_batches(acme):
    masks = Guardrail.objects.create(tenant=acme, name="mask-cards", detector="card", action="mask")
    would = Guardrail.objects.create(
        tenant=acme, name="would-block", detector="ip", action="block", shadow=True
    )

    assert (
        record_hits(
            [
                hit(masks, "r1"),
                hit(masks, "r2"),
                hit(would, "r1"),
                hit(masks, "r3", at=NOON + timedelta(hours=13)),
            ]
        )
        == 4
    )
    record_hits([hit(masks, "r4")])

    assert counters() == {
        ("mask-cards", "2026-03-10", "mask", False): 3,
        ("mask-cards", "2026-03-11", "mask", False): 1,
        ("would-block", "2026-03-10", "block", True): 1,
    }


def test_hits_of_a_guardrail_deleted_meanwhile_are_dropped(acme):
    gone = Guardrail.objects.create(tenant=acme, name="gone", detector="card", action="mask")
    kept = Guardrail.objects.create(tenant=acme, name="kept", detector="card", action="mask")
    pending = [hit(gone, "r1"), hit(kept, "r2")]
    gone.delete()

    assert record_hits(pending) == 1
    assert counters() == {("kept", "2026-03-10", "mask", False): 1}


def test_flags_are_audited_once_per_guardrail_and_batch_without_the_matched_text(acme):
    flag = Guardrail.objects.create(tenant=acme, name="flag-keys", detector="secret", action="flag")
    shadow = Guardrail.objects.create(
        tenant=acme, name="shadow-mask", detector="email", action="mask", shadow=True
    )
    masks = Guardrail.objects.create(tenant=acme, name="mask-cards", detector="card", action="mask")

    record_hits([hit(flag, "r1"), hit(flag, "r2", direction="response"), hit(shadow, "r3"), hit(masks, "r4")])

    rows = {row.target_id: row for row in AuditLog.objects.filter(action="guardrail.flag")}
    assert set(rows) == {str(flag.pk), str(shadow.pk)}
    row = rows[str(flag.pk)]
    assert (row.tenant, row.actor_label) == (acme, "gateway")
    assert row.metadata["requests"] == 2
    assert row.metadata["request_ids"] == ["r1", "r2"]
    assert row.metadata["directions"] == ["request", "response"]
    assert row.metadata["key_prefixes"] == ["lp-AbCd1234"]
    assert rows[str(shadow.pk)].metadata["shadow"] is True
    assert rows[str(shadow.pk)].metadata["action"] == "mask"


def test_nothing_to_record_writes_nothing(acme):
    assert record_hits([]) == 0
    assert not GuardrailHit.objects.exists() and not AuditLog.objects.exists()
