"""The in-process limiter (no REDIS_URL): what only it must get right; test_limiter_semantics has the rest."""

import asyncio
import threading
from decimal import Decimal

from quotas import limiter_local
from quotas.admission import Slot
from quotas.limiter import current_usage, reserve, settle
from tests import limiter_support as support
from tests.limiter_support import T0, ask

# The shared fixtures, bound here so that pytest finds them.
in_process, make_limit = support.in_process, support.make_limit


def test_event_loops_in_several_threads_share_one_exact_limit(in_process, make_limit):
    limit = make_limit("requests", "minute", 10)
    admitted = []

    def worker():
        async def burst():
            return await asyncio.gather(*(reserve([limit], ask(), now=T0) for _ in range(25)))

        admitted.extend(d.admitted for d in asyncio.run(burst()))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(admitted) == 100
    assert sum(admitted) == 10


async def test_the_usage_is_this_processs_own(in_process, make_limit):
    limit = make_limit("tokens", "day", 1000)
    decision = await reserve([limit], ask(input_tokens=100, max_output_tokens=100), now=T0)
    await settle(decision.reservation, input_tokens=100, output_tokens=40, cost=Decimal(0))

    found = current_usage(limit, now=T0)

    assert (found["used"], found["reserved"]) == (140, 0)


async def test_windows_that_ended_are_dropped_from_memory(in_process, make_limit, settings):
    settings.LLMPROXY_QUOTA_HOLD_SECONDS = 900
    old = make_limit("requests", "minute", 5)
    await reserve([old], ask(), now=T0)
    assert Slot.of(old, T0).key in limiter_local._windows

    # Past the window's end, the hold's lapse time and the sweep interval.
    await reserve([make_limit("requests", "minute", 5)], ask(), now=T0 + 30 + 900 + 61)

    assert Slot.of(old, T0).key not in limiter_local._windows
