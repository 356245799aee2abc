import threading
from datetime import UTC, datetime

import pytest
from django.db import connection

from audit.chain import row_digest, verify_chain
from audit.models import AuditChain, AuditLog
from audit.services import AuthFailureTally, audit_ip, audit_record, record_auth_failures


def record(tenant=None, action="test.event", **kw):
    return audit_record(action=action, actor="test", tenant=tenant, **kw)


@pytest.mark.django_db
def test_each_row_links_to_the_previous_row_of_its_tenants_chain(acme):
    first, second = record(acme), record(acme, metadata={"b": [1, 2], "a": {"x": 1.5}})

    assert (first.chain, first.seq, first.prev_hash) == (acme.pk, 1, "")
    assert (second.chain, second.seq, second.prev_hash) == (acme.pk, 2, first.row_hash)
    stored = AuditLog.objects.get(pk=second.pk)
    assert stored.row_hash == row_digest(stored) == second.row_hash
    head = AuditChain.objects.get(chain=acme.pk)
    assert (head.seq, head.row_hash) == (2, second.row_hash)


@pytest.mark.django_db
def test_tenants_have_separate_chains_and_platform_rows_have_their_own(acme, globex):
    a, g, p = record(acme), record(globex), record(None)

    assert [(r.chain, r.seq) for r in (a, g, p)] == [(acme.pk, 1), (globex.pk, 1), (0, 1)]
    assert all(verify_chain(c).problem is None for c in (acme.pk, globex.pk, 0))


@pytest.mark.django_db
def test_a_row_still_verifies_after_its_tenant_and_actor_are_deleted(acme, acme_user):
    audit_record(action="test.event", actor=acme_user, tenant=acme)
    acme_user.delete()
    AuditLog.objects.filter(chain=acme.pk).update(tenant=None)  # what deleting the tenant does

    assert verify_chain(acme.pk).problem is None


@pytest.mark.django_db
def test_the_hash_covers_what_the_database_gives_back(acme):
    row = record(acme, metadata={"n": 1, "f": 0.1, "t": (1, "x"), "u": "é"}, ip="2001:db8:0:0:0:0:0:1")

    stored = AuditLog.objects.get(pk=row.pk)
    assert stored.ip == "2001:db8::1"
    assert row_digest(stored) == stored.row_hash


@pytest.mark.django_db
def test_rows_recorded_inside_audit_ip_carry_that_address(acme):
    with audit_ip("203.0.113.9"):
        inside = record(acme)
    outside = record(acme)

    assert (inside.ip, outside.ip) == ("203.0.113.9", None)


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_of_one_chain_never_fork_it(acme):
    errors = []

    def write(n):
        try:
            for i in range(15):
                record(acme, metadata={"writer": n, "i": i})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    seqs = list(AuditLog.objects.filter(chain=acme.pk).order_by("id").values_list("seq", flat=True))
    assert seqs == list(range(1, 61))
    assert verify_chain(acme.pk).problem is None


def test_the_tally_counts_failures_per_source_minute_and_tenant():
    tally = AuthFailureTally()
    t0 = datetime(2030, 1, 1, 12, 0, 5, tzinfo=UTC)
    t1 = datetime(2030, 1, 1, 12, 0, 55, tzinfo=UTC)
    tally.add(ip="198.51.100.1", reason="unknown", prefix="lp-AAAAAAAA", now=t0)
    tally.add(ip="198.51.100.1", reason="wrong_secret", prefix="lp-BBBBBBBB", tenant_id=7, now=t0)
    tally.add(ip="198.51.100.1", reason="unknown", prefix="lp-AAAAAAAA-" + "s" * 40, now=t1)
    tally.add(ip="198.51.100.2", reason="missing", now=t1)

    buckets = {(b.ip, b.tenant_id): b for b in tally.drain()}

    assert set(buckets) == {("198.51.100.1", None), ("198.51.100.1", 7), ("198.51.100.2", None)}
    unknown = buckets[("198.51.100.1", None)]
    assert (unknown.minute, unknown.count, unknown.reasons) == (t0.replace(second=0), 2, {"unknown": 2})
    # Only well-formed prefixes are kept: a whole key sent as the prefix is dropped.
    assert unknown.key_prefixes == ["lp-AAAAAAAA"]
    assert tally.drain() == []


def test_the_tally_folds_sources_past_its_cap_into_one_bucket():
    tally = AuthFailureTally()
    tally.MAX_BUCKETS = 3
    now = datetime(2030, 1, 1, tzinfo=UTC)
    for i in range(10):
        tally.add(ip=f"198.51.100.{i}", reason="unknown", now=now)

    buckets = tally.drain()

    assert len(buckets) == 4
    assert [b.count for b in buckets if b.ip is None] == [7]


@pytest.mark.django_db
def test_record_auth_failures_writes_one_chained_row_per_bucket(acme):
    tally = AuthFailureTally()
    now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    for _ in range(50):
        tally.add(ip="198.51.100.7", reason="unknown", prefix="lp-AAAAAAAA", now=now)
    tally.add(ip="198.51.100.7", reason="wrong_secret", prefix="lp-BBBBBBBB", tenant_id=acme.pk, now=now)
    tally.add(ip="198.51.100.8", reason="revoked", tenant_id=999_999, now=now)  # tenant deleted since

    written = record_auth_failures(tally.drain())

    assert written == 3
    rows = AuditLog.objects.filter(action="security.auth_failed")
    platform = rows.filter(chain=0, ip="198.51.100.7").get()
    assert platform.metadata == {
        "minute": "2030-01-01T12:00:00+00:00",
        "count": 50,
        "reasons": {"unknown": 50},
        "key_prefixes": ["lp-AAAAAAAA"],
        "all_other_sources": False,
    }
    assert rows.get(tenant=acme).metadata["reasons"] == {"wrong_secret": 1}
    assert rows.get(ip="198.51.100.8").chain == 0
    assert verify_chain(0).problem is None and verify_chain(acme.pk).problem is None
