"""The limiter on a real Redis (a private redis-server): exact across processes; when Redis goes away."""

import asyncio
import logging
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from redis.crc import key_slot

from llmproxy.redis_client import get_redis
from quotas import limiter, limiter_redis
from quotas.admission import Plan, Slot
from quotas.limiter import LimiterUnavailable, current_usage, release, reserve, settle
from tests import limiter_support as support
from tests.limiter_support import T0, RedisServer, ask, usage

# The shared fixtures, bound here so that pytest finds them.
on_redis, redis_server, make_limit = support.on_redis, support.redis_server, support.make_limit

ROOT = Path(__file__).resolve().parent.parent

WORKER = """
import asyncio, sys
from decimal import Decimal
from quotas.limiter import Ask, Limit, reserve

async def main(limit_id, count, now):
    limit = Limit(limit_id, 7, "tenant", "requests", "minute", Decimal(10))
    print("ready", flush=True)
    sys.stdin.readline()
    asks = [reserve([limit], Ask(10, 10, Decimal(0), Decimal(0)), now=now) for _ in range(count)]
    print(sum(d.admitted for d in await asyncio.gather(*asks)), flush=True)

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
"""


@pytest.fixture
def outage_redis(settings, monkeypatch):
    """A Redis of this test's own, to stop and start again."""
    server = RedisServer()
    settings.REDIS_URL = server.url
    monkeypatch.setattr(limiter, "_redis_retry_at", 0.0)
    monkeypatch.setattr(limiter, "_warned_at", {})
    monkeypatch.setattr(limiter, "REDIS_RETRY_SECONDS", 0.2)
    yield server
    if server.process.poll() is None:
        server.stop()


def test_three_processes_sharing_one_redis_admit_exactly_the_limit_between_them(on_redis, make_limit):
    limit = make_limit("requests", "minute", 10)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "llmproxy.settings_test",
        "REDIS_URL": on_redis.url,
        "PYTHONPATH": str(ROOT),
    }
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(limit.id), "17", repr(T0)],
            env=env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for worker in workers:
        assert worker.stdout.readline().strip() == "ready"
    for worker in workers:  # all three fire at once
        worker.stdin.write("go\n")
        worker.stdin.flush()

    admitted = [int(worker.communicate(timeout=60)[0]) for worker in workers]

    assert sum(admitted) == 10
    assert usage(limit) == (0, 10)


async def test_with_redis_down_a_fail_closed_tenant_is_refused(outage_redis, make_limit):
    limit = make_limit("requests", "minute", 10)
    before = limiter.counters["redis_fail_closed"]
    outage_redis.stop()

    with pytest.raises(LimiterUnavailable):
        await reserve([limit], ask(), now=T0)
    with pytest.raises(LimiterUnavailable):
        await reserve([limit], ask(), redis_down_policy="closed", now=T0)

    assert limiter.counters["redis_fail_closed"] == before + 2


async def test_with_redis_down_a_fail_open_tenant_is_limited_in_process_until_redis_is_back(
    outage_redis, make_limit, caplog
):
    limit = make_limit("requests", "minute", 3)
    before = limiter.counters["redis_fail_open"]
    assert (await reserve([limit], ask(), redis_down_policy="open", now=T0)).admitted
    assert usage(limit) == (0, 1)
    outage_redis.stop()

    with caplog.at_level(logging.WARNING, logger="quotas.limiter"):
        during = [await reserve([limit], ask(), redis_down_policy="open", now=T0) for _ in range(4)]
    for decision in during:
        await settle(decision.reservation, input_tokens=10, output_tokens=10, cost=Decimal(0))
    outage_redis.start()
    await asyncio.sleep(0.25)
    back = await reserve([limit], ask(), redis_down_policy="open", now=T0)

    # Limited, not unlimited: this process alone allows 3 in the window.
    assert [d.admitted for d in during] == [True, True, True, False]
    assert limiter.counters["redis_fail_open"] == before + 4
    fail_open_lines = [r for r in caplog.records if "limiting in-process" in r.getMessage()]
    assert len(fail_open_lines) == 1
    # Redis is used again: the restarted (empty) server holds this reservation.
    assert back.admitted
    assert usage(limit) == (0, 1)


async def test_when_redis_does_not_answer_it_is_not_asked_again_for_a_moment(
    outage_redis, make_limit, monkeypatch
):
    limit = make_limit("requests", "minute", 3)
    monkeypatch.setattr(limiter, "REDIS_RETRY_SECONDS", 30.0)
    outage_redis.stop()
    with pytest.raises(LimiterUnavailable):
        await reserve([limit], ask(), now=T0)
    outage_redis.start()

    with pytest.raises(LimiterUnavailable):
        await reserve([limit], ask(), now=T0)
    monkeypatch.setattr(limiter, "_redis_retry_at", 0.0)
    assert (await reserve([limit], ask(), now=T0)).admitted


async def test_a_settle_that_cannot_reach_redis_is_counted_and_does_not_raise(outage_redis, make_limit):
    limit = make_limit("tokens", "minute", 1000)
    decision = await reserve([limit], ask(), now=T0)
    before = limiter.counters["settle_lost"]
    outage_redis.stop()

    await settle(decision.reservation, input_tokens=10, output_tokens=10, cost=Decimal(0))

    assert limiter.counters["settle_lost"] == before + 1


async def test_current_usage_says_when_redis_does_not_answer(outage_redis, make_limit):
    outage_redis.stop()

    with pytest.raises(LimiterUnavailable):
        current_usage(make_limit("requests", "day", 1))


async def test_the_script_is_loaded_again_when_redis_has_forgotten_it(on_redis, make_limit):
    limit = make_limit("requests", "minute", 2)
    first = await reserve([limit], ask(), now=T0)
    on_redis.client().script_flush()

    second = await reserve([limit], ask(), now=T0)
    await settle(first.reservation, input_tokens=10, output_tokens=10, cost=Decimal(0))
    on_redis.client().script_flush()
    await settle(second.reservation, input_tokens=10, output_tokens=10, cost=Decimal(0))

    assert first.admitted and second.admitted
    assert usage(limit) == (2, 0)


async def test_all_keys_of_a_request_share_the_tenants_hash_tag_and_expire(on_redis, make_limit):
    limits = [
        make_limit("requests", "minute", 5, scope="key", tenant_id=42),
        make_limit("tokens", "hour", 5000, scope="user", tenant_id=42),
        make_limit("cost", "month", "1", scope="tenant", tenant_id=42),
    ]

    await reserve(limits, ask(output_price="1"), now=T0)

    keys = on_redis.client().keys("*")
    assert len(keys) == 6
    assert all("{t42}" in key for key in keys)
    assert len({key_slot(key.encode()) for key in keys}) == 1
    minute = Slot.of(limits[0], T0)
    # Past the window's end by the hold's lapse time, not forever.
    assert 0 < on_redis.client().ttl(minute.key) <= 30 + 900


async def test_limits_of_two_tenants_are_never_reserved_in_one_call(on_redis, make_limit):
    with pytest.raises(ValueError):
        await reserve([make_limit("requests", "day", 1, tenant_id=t) for t in (1, 2)], ask())


async def test_cost_is_kept_in_redis_as_integer_nano_dollars(on_redis, make_limit):
    limit = make_limit("cost", "day", "0.5")
    decision = await reserve([limit], ask(input_tokens=100, max_output_tokens=10, input_price="0.15"), now=T0)

    await settle(decision.reservation, input_tokens=100, output_tokens=10, cost=Decimal("0.000015"))

    counters = on_redis.client().hgetall(Slot.of(limit, T0).key)
    assert counters == {"used": "15000", "held": "0"}
    assert usage(limit) == (Decimal("0.000015"), 0)


async def test_a_reservation_resent_after_a_timeout_is_made_once(on_redis, make_limit):
    # redis-py resends a command whose answer timed out, although Redis may have run it.
    limit = make_limit("tokens", "day", 1000)
    slots, plan = (Slot.of(limit, T0),), Plan.of(ask(input_tokens=100, max_output_tokens=300))

    first = await limiter_redis.reserve(get_redis(), slots, plan, "resent", T0, 900)
    again = await limiter_redis.reserve(get_redis(), slots, plan, "resent", T0, 900)

    assert first.admitted and again == first
    assert usage(limit) == (0, 400)


async def test_a_reserve_cancelled_while_its_script_waits_gives_the_reservation_back(on_redis, make_limit):
    limit = make_limit("tokens", "day", 1000)
    # Writes (and scripts) wait while the server is paused, so the script surely runs after the cancel.
    on_redis.client().execute_command("CLIENT", "PAUSE", 300, "WRITE")
    task = asyncio.create_task(reserve([limit], ask(input_tokens=100, max_output_tokens=300), now=T0))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    key = Slot.of(limit, T0).key
    for _ in range(60):  # the pause ends, the script runs, then the release
        await asyncio.sleep(0.05)
        if on_redis.client().exists(key) and usage(limit) == (0, 0):
            break

    assert on_redis.client().exists(key)  # the script did run
    assert usage(limit) == (0, 0)


async def test_release_on_redis_charges_nothing(on_redis, make_limit):
    limit = make_limit("requests", "minute", 1)
    decision = await reserve([limit], ask(), now=T0)

    await release(decision.reservation)

    assert usage(limit) == (0, 0)


async def test_settles_ending_together_are_each_charged_once_across_tenants(
    on_redis, make_limit, monkeypatch
):
    # They go to Redis in one script call per tenant; a small cap makes several calls of one tenant too.
    monkeypatch.setattr(limiter_redis, "SETTLES_PER_CALL", 4)
    tokens = {tenant: make_limit("tokens", "hour", 100_000, tenant_id=tenant) for tenant in (41, 42)}
    requests = {
        tenant: make_limit("requests", "hour", 100, scope="key", tenant_id=tenant) for tenant in (41, 42)
    }
    decisions = [
        (tenant, await reserve([tokens[tenant], requests[tenant]], ask(input_tokens=10), now=T0))
        for tenant in (41, 42)
        for _ in range(9)
    ]
    assert all(decision.admitted for _, decision in decisions)
    sent = []
    run = limiter_redis._settle_script.run
    monkeypatch.setattr(
        limiter_redis._settle_script,
        "run",
        lambda client, keys, args: sent.append(keys) or run(client, keys, args),
    )

    await asyncio.gather(
        *(
            settle(decision.reservation, input_tokens=10, output_tokens=i, cost=Decimal(0))
            for i, (_, decision) in enumerate(decisions)
        )
    )

    assert len(sent) == 6  # 9 settles of each tenant, 4 to a call
    assert all(len({key.partition("}")[0] for key in keys}) == 1 for keys in sent)
    assert usage(tokens[41]) == (sum(10 + i for i in range(9)), 0)
    assert usage(tokens[42]) == (sum(10 + i for i in range(9, 18)), 0)
    assert usage(requests[41]) == usage(requests[42]) == (9, 0)
