"""The on-disk usage spool: records a failed write leaves behind reach the database later, none twice."""

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import OperationalError

from audit.models import RequestLog
from llmproxy.gateway import usage
from llmproxy.gateway.usage import UsageRecord, UsageRecorder
from llmproxy.gateway.usage_spool import Spool, decode, encode
from llmproxy.guardrails.hits import Hit
from tests.gateway_helpers import make_key


def record(tenant, key=None, n=0, **fields):
    return UsageRecord(
        created_at=datetime.now(UTC),
        request_id=f"req-{n}",
        tenant_id=tenant.id,
        api_key_id=key.id if key else None,
        key_prefix=key.prefix if key else "",
        endpoint="chat",
        model="m",
        status=200,
        input_tokens=3,
        output_tokens=4,
        cost=Decimal("0.000123"),
        **fields,
    )


@pytest.fixture
def recorder(tmp_path, settings):
    settings.LLMPROXY_USAGE_SPOOL_FULL_POLICY = "drop"
    settings.LLMPROXY_USAGE_SPOOL_MAX_BYTES = 1_000_000
    rec = UsageRecorder()
    rec.spool = Spool(root=tmp_path / "spool")
    return rec


@pytest.fixture
def database_away(monkeypatch):
    real = usage._write

    class Switch:
        down = True

    def write(batch):
        if Switch.down:
            raise OperationalError("connection refused")
        real(batch)

    monkeypatch.setattr(usage, "_write", write)
    return Switch


def test_a_record_survives_the_round_trip_through_json(acme):
    hit = Hit(
        guardrail_id=1,
        tenant_id=acme.id,
        rule="r",
        detector="email",
        action="mask",
        shadow=False,
        direction="request",
        request_id="req-0",
        key_prefix="sk-x",
        at=datetime.now(UTC),
    )
    original = record(
        acme,
        n=0,
        attempts=[{"status": 502, "upstream_model": "a"}],
        guardrail_hits=[hit],
        ttfb_ms=1.5,
        prompt="hello",
    )
    assert decode(encode(original)) == original


@pytest.mark.django_db(transaction=True)
def test_records_of_a_failed_write_are_written_once_when_the_database_returns(recorder, database_away, acme):
    key, _ = make_key(acme, name="k")
    for n in range(5):
        recorder.add(record(acme, key, n))
    with pytest.raises(OperationalError):
        recorder.flush()
    assert recorder.pending() == 0  # on disk, not in memory
    assert recorder.backlog() == 5
    recorder.add(record(acme, key, 5))
    with pytest.raises(OperationalError):
        recorder.flush()

    database_away.down = False
    assert recorder.flush() == 6
    assert sorted(RequestLog.objects.values_list("request_id", flat=True)) == [f"req-{n}" for n in range(6)]
    assert recorder.backlog() == 0
    assert recorder.flush() == 0


@pytest.mark.django_db(transaction=True)
def test_a_full_spool_under_the_drop_policy_drops_the_oldest_and_counts_them(
    recorder, database_away, settings, acme
):
    one_batch = len(encode(record(acme, n=0))) + 1
    settings.LLMPROXY_USAGE_SPOOL_MAX_BYTES = one_batch * 2 + 10
    for n in range(4):
        recorder.add(record(acme, n=n))
        with pytest.raises(OperationalError):
            recorder.flush()
    assert recorder.spool.dropped == 2
    assert recorder.spool.full_events == 2
    assert usage.accepting()

    database_away.down = False
    recorder.flush()
    assert sorted(RequestLog.objects.values_list("request_id", flat=True)) == ["req-2", "req-3"]


@pytest.mark.django_db(transaction=True)
def test_a_full_spool_under_the_refuse_policy_stops_accepting_until_it_drains(
    recorder, database_away, settings, monkeypatch, acme
):
    settings.LLMPROXY_USAGE_SPOOL_FULL_POLICY = "refuse"
    settings.LLMPROXY_USAGE_SPOOL_MAX_BYTES = len(encode(record(acme, n=0))) + 1
    monkeypatch.setattr(usage, "recorder", recorder)
    for n in range(3):
        recorder.add(record(acme, n=n))
        with pytest.raises(OperationalError):
            recorder.flush()
    assert not usage.accepting()
    with pytest.raises(OperationalError):
        recorder.flush()  # the database still away: still refusing
    assert not usage.accepting()
    assert recorder.spool.dropped == 0
    assert recorder.pending() == 2  # kept in memory, nothing lost
    assert recorder.backlog() == 3

    database_away.down = False
    recorder.flush()
    assert usage.accepting()
    assert RequestLog.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_new_process_writes_the_spool_of_a_dead_one(recorder, database_away, tmp_path, acme):
    recorder.add(record(acme, n=7))
    with pytest.raises(OperationalError):
        recorder.flush()
    os.close(recorder.spool._lock_fd)  # the process ends
    dead = recorder.spool.root / "999999999"
    (recorder.spool.root / str(recorder.spool._pid)).rename(dead)  # as if that pid had died with its spool

    database_away.down = False
    successor = UsageRecorder()
    successor.spool = Spool(root=recorder.spool.root)
    assert successor.spool.has_records()
    assert successor.flush() == 1
    assert list(RequestLog.objects.values_list("request_id", flat=True)) == ["req-7"]
    assert not dead.exists()


@pytest.mark.django_db(transaction=True)
def test_the_spool_of_a_live_process_is_left_alone(recorder, database_away, acme):
    recorder.add(record(acme, n=1))
    with pytest.raises(OperationalError):
        recorder.flush()
    os.close(recorder.spool._lock_fd)
    alive = recorder.spool.root / "999999998"
    (recorder.spool.root / str(recorder.spool._pid)).rename(alive)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import fcntl, os, time
        fcntl.flock(os.open({str(alive / ".lock")!r}, os.O_RDWR), fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(30)
    """),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline() == b"locked\n"
        other = Spool(root=recorder.spool.root)
        assert not other.has_records()
        assert len(list(alive.glob("*.jsonl"))) == 1
    finally:
        holder.kill()
        holder.wait()
