from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from audit.models import AuditChain, AuditLog
from audit.purge import logs_purge
from audit.services import audit_record


def run(*args):
    out = StringIO()
    call_command("verify_audit_log", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def fails(*args):
    out = StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("verify_audit_log", *args, stdout=out, stderr=StringIO())
    assert failure.value.returncode != 0
    assert "\n" not in str(failure.value)
    return out.getvalue()


@pytest.fixture
def chain(acme, globex):
    """Five acme rows, two globex rows, one platform row; returns acme's rows in order."""
    rows = [audit_record(action=f"test.{i}", actor="test", tenant=acme, metadata={"i": i}) for i in range(5)]
    for i in range(2):
        audit_record(action=f"test.{i}", actor="test", tenant=globex)
    audit_record(action="test.platform", actor="test")
    return rows


@pytest.mark.django_db
def test_an_untouched_log_verifies_and_prints_each_chains_head(chain, acme, globex):
    lines = run().splitlines()

    head = {c.chain: c.row_hash for c in AuditChain.objects.all()}
    assert lines == [
        f"platform chain: ok, 1 rows, head seq 1 {head[0]}",
        f"tenant acme: ok, 5 rows, head seq 5 {head[acme.pk]}",
        f"tenant globex: ok, 2 rows, head seq 2 {head[globex.pk]}",
    ]


@pytest.mark.django_db
def test_it_reports_an_edited_row(chain):
    AuditLog.objects.filter(pk=chain[2].pk).update(metadata={"i": 99})

    output = fails()

    assert f"tenant acme: ALTERED: row id={chain[2].pk} (seq 3) was altered" in output
    assert "tenant globex: ok" in output


@pytest.mark.django_db
def test_it_reports_an_edited_timestamp(chain):
    AuditLog.objects.filter(pk=chain[1].pk).update(created_at=timezone.now() - timedelta(days=3))

    assert f"ALTERED: row id={chain[1].pk} (seq 2)" in fails("--tenant", "acme")


@pytest.mark.django_db
def test_it_reports_a_deleted_row(chain):
    AuditLog.objects.filter(pk=chain[2].pk).delete()

    output = fails()

    assert f"REMOVED: row(s) removed before row id={chain[3].pk} (seq 4): seq 3 is missing" in output


@pytest.mark.django_db
def test_it_reports_the_newest_rows_deleted(chain):
    AuditLog.objects.filter(pk__in=[chain[3].pk, chain[4].pk]).delete()

    assert "REMOVED: the newest 2 row(s) are missing (seq 4..5)" in fails("--tenant", "acme")


@pytest.mark.django_db
def test_it_reports_the_oldest_row_deleted(chain):
    AuditLog.objects.filter(pk=chain[0].pk).delete()

    assert "seq 1 is missing" in fails("--tenant", "acme")


@pytest.mark.django_db
def test_it_reports_reordered_rows(chain):
    # Swap everything but the ids: the rows change places in the table.
    a, b = AuditLog.objects.get(pk=chain[1].pk), AuditLog.objects.get(pk=chain[2].pk)
    fields = [f.attname for f in AuditLog._meta.concrete_fields if f.attname != "id"]
    values_a, values_b = ({f: getattr(r, f) for f in fields} for r in (a, b))
    AuditLog.objects.filter(pk=a.pk).update(seq=None)  # frees (chain, seq) for the swap
    AuditLog.objects.filter(pk=b.pk).update(**values_a)
    AuditLog.objects.filter(pk=a.pk).update(**values_b)

    output = fails("--tenant", "acme")

    assert f"REORDERED: row id={chain[1].pk} (seq 3) is stored out of order: seq 2 was expected" in output


@pytest.mark.django_db
def test_it_reports_a_row_moved_to_another_tenant(chain, globex):
    AuditLog.objects.filter(pk=chain[1].pk).update(tenant=globex)

    assert "was moved to another tenant" in fails()
    assert "is shown as this tenant's but is not in its chain" in fails("--tenant", "globex")


@pytest.mark.django_db
def test_it_reports_a_row_inserted_without_the_chain(chain, acme):
    AuditLog.objects.create(action="forged", actor_label="test", tenant=acme)

    assert "not in its chain" in fails("--tenant", "acme")
    assert "rows outside any chain: INSERTED: 1 row(s) outside any chain" in fails()


@pytest.mark.django_db
def test_a_forged_row_with_a_plain_sha256_does_not_pass(chain, acme):
    import hashlib

    row = AuditLog.objects.get(pk=chain[4].pk)
    row.action = "forged"
    row.row_hash = hashlib.sha256(b"anything").hexdigest()
    row.save()
    AuditChain.objects.filter(chain=acme.pk).update(row_hash=row.row_hash)

    assert "ALTERED" in fails("--tenant", "acme")


@pytest.mark.django_db
def test_a_purge_moves_the_anchor_so_the_rest_still_verifies(chain, acme):
    old = timezone.now() - timedelta(days=60)
    AuditLog.objects.filter(pk__in=[r.pk for r in chain[:2]]).update(created_at=old)
    # Ageing them broke their hashes; once purged that no longer matters.
    logs_purge(cutoff=timezone.now() - timedelta(days=30), tenant=acme)

    # The three rows left and the purge's own audit row.
    assert run("--tenant", "acme").startswith("tenant acme: ok, 4 rows")
    head = AuditChain.objects.get(chain=acme.pk)
    assert (head.anchor_seq, head.anchor_hash) == (2, chain[1].row_hash)


@pytest.mark.django_db
def test_an_empty_log_verifies(db):
    assert run() == ""


@pytest.mark.django_db
def test_an_unknown_tenant_is_refused(chain):
    with pytest.raises(CommandError, match="unknown tenant 'nope'"):
        run("--tenant", "nope")
