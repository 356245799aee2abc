"""What the limiter promises, checked on both backends: in-process and Redis (a private server)."""

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from quotas.limiter import current_usage, release, remaining_tokens, reserve, settle
from tests import limiter_support as support
from tests.limiter_support import T0, ask, usage

# The shared fixtures, bound here so that pytest finds them.
backend, in_process, on_redis, redis_server, make_limit = (
    support.backend,
    support.in_process,
    support.on_redis,
    support.redis_server,
    support.make_limit,
)


async def test_fifty_concurrent_requests_against_a_limit_of_ten_admit_exactly_ten(backend, make_limit):
    limit = make_limit("requests", "minute", 10)

    decisions = await asyncio.gather(*(reserve([limit], ask(), now=T0) for _ in range(50)))

    assert sum(d.admitted for d in decisions) == 10
    assert usage(limit) == (0, 10)
    refused = [d for d in decisions if not d.admitted]
    assert all(d.denied == limit and d.reservation is None for d in refused)


async def test_the_tightest_of_tenant_user_and_key_limits_cuts_the_output(backend, make_limit):
    tenant = make_limit("tokens", "day", 10_000, scope="tenant")
    user = make_limit("tokens", "hour", 600, scope="user")
    key = make_limit("tokens", "minute", 5_000, scope="key")

    decision = await reserve([tenant, user, key], ask(input_tokens=100, max_output_tokens=1000), now=T0)

    assert decision.admitted
    assert decision.output_tokens == 500
    assert [usage(limit) for limit in (tenant, user, key)] == [(0, 600)] * 3


async def test_a_refusal_by_one_limit_reserves_nothing_on_the_others(backend, make_limit):
    tenant_tokens = make_limit("tokens", "day", 10_000, scope="tenant")
    tenant_cost = make_limit("cost", "day", "5", scope="tenant")
    key_requests = make_limit("requests", "minute", 1, scope="key")
    limits = [tenant_tokens, tenant_cost, key_requests]
    first = await reserve(limits, ask(input_tokens=10, max_output_tokens=90, output_price="1"), now=T0)

    second = await reserve(limits, ask(input_tokens=10, max_output_tokens=90, output_price="1"), now=T0)

    assert first.admitted and not second.admitted
    assert second.denied == key_requests
    assert second.reservation is None and second.output_tokens == 0
    assert usage(tenant_tokens) == (0, 100)
    assert usage(tenant_cost) == (0, Decimal("0.00009"))
    assert usage(key_requests) == (0, 1)


async def test_the_output_is_cut_to_what_is_left_and_no_room_for_an_output_token_refuses(backend, make_limit):
    tokens = make_limit("tokens", "hour", 1000)

    cut = await reserve([tokens], ask(input_tokens=900, max_output_tokens=500), now=T0)
    await settle(cut.reservation, input_tokens=900, output_tokens=99, cost=Decimal(0))
    last = await reserve([tokens], ask(input_tokens=0, max_output_tokens=500), now=T0)
    full = await reserve([tokens], ask(input_tokens=0, max_output_tokens=500), now=T0)

    assert cut.admitted and cut.output_tokens == 100
    assert last.admitted and last.output_tokens == 1
    assert not full.admitted and full.denied == tokens


async def test_a_request_without_output_needs_only_its_input_to_fit(backend, make_limit):
    tokens = make_limit("tokens", "hour", 1000)

    embedding = await reserve([tokens], ask(input_tokens=1000, max_output_tokens=0), now=T0)
    other = make_limit("tokens", "hour", 1000)
    chat = await reserve([other], ask(input_tokens=1000, max_output_tokens=10), now=T0)

    assert embedding.admitted and embedding.output_tokens == 0
    assert not chat.admitted


async def test_a_token_budget_is_passed_only_by_the_estimation_error_and_settles_exactly(backend, make_limit):
    budget = make_limit("tokens", "day", 5_000)
    spent = requests = 0
    while True:
        decision = await reserve([budget], ask(input_tokens=120, max_output_tokens=400), now=T0)
        if not decision.admitted:
            break
        used, reserved = usage(budget)
        assert used + reserved <= 5_000
        # The upstream writes at most what it was allowed, and counts 3 input tokens more than we did.
        output = min(decision.output_tokens, 350)
        await settle(decision.reservation, input_tokens=123, output_tokens=output, cost=Decimal(0))
        spent += 123 + output
        requests += 1

    assert usage(budget) == (spent, 0)
    # Refused once 120 input tokens and one output token no longer fit.
    assert 5_000 - 120 <= spent <= 5_000 + 3 * requests


async def test_settle_gives_back_the_unused_part_and_charges_the_excess(backend, make_limit):
    tokens = make_limit("tokens", "day", 10_000)
    short = await reserve([tokens], ask(input_tokens=100, max_output_tokens=1000), now=T0)
    long = await reserve([tokens], ask(input_tokens=100, max_output_tokens=1000), now=T0)

    await settle(short.reservation, input_tokens=100, output_tokens=20, cost=Decimal(0))
    await settle(long.reservation, input_tokens=150, output_tokens=1000, cost=Decimal(0))

    assert usage(tokens) == (120 + 1150, 0)


async def test_a_second_settle_of_one_reservation_changes_nothing(backend, make_limit):
    tokens = make_limit("tokens", "day", 10_000)
    requests = make_limit("requests", "day", 5)
    decision = await reserve([tokens, requests], ask(input_tokens=100, max_output_tokens=1000), now=T0)

    await settle(decision.reservation, input_tokens=100, output_tokens=50, cost=Decimal(0))
    await settle(decision.reservation, input_tokens=100, output_tokens=50, cost=Decimal(0))
    await release(decision.reservation)

    assert usage(tokens) == (150, 0)
    assert usage(requests) == (1, 0)


async def test_release_gives_the_whole_reservation_back(backend, make_limit):
    requests = make_limit("requests", "minute", 1)
    tokens = make_limit("tokens", "minute", 100)
    decision = await reserve([requests, tokens], ask(input_tokens=10, max_output_tokens=50), now=T0)

    await release(decision.reservation)

    assert usage(requests) == (0, 0) and usage(tokens) == (0, 0)
    assert (await reserve([requests, tokens], ask(input_tokens=10, max_output_tokens=50), now=T0)).admitted


async def test_a_minute_window_resets_at_its_boundary(backend, make_limit):
    limit = make_limit("requests", "minute", 2)
    for _ in range(2):
        assert (await reserve([limit], ask(), now=T0)).admitted

    just_before = await reserve([limit], ask(), now=T0 + 29.5)
    at_the_boundary = await reserve([limit], ask(), now=T0 + 30)

    assert not just_before.admitted
    assert just_before.retry_after == 1
    assert just_before.headers["x-ratelimit-reset-requests"] == "1s"
    assert at_the_boundary.admitted
    assert at_the_boundary.headers["x-ratelimit-remaining-requests"] == "1"
    assert usage(limit, now=T0 + 30) == (0, 1)


async def test_a_month_window_runs_from_the_first_of_the_month_to_the_next_in_utc(backend, make_limit):
    limit = make_limit("requests", "month", 1)
    last_second_of_january = datetime(2030, 1, 31, 23, 59, 59, tzinfo=UTC).timestamp()
    mid_january = await reserve([limit], ask(), now=T0)
    await settle(mid_january.reservation, input_tokens=10, output_tokens=10, cost=Decimal(0))

    refused = await reserve([limit], ask(), now=last_second_of_january)
    february = await reserve([limit], ask(), now=last_second_of_january + 1)

    assert not refused.admitted and refused.retry_after == 1
    assert february.admitted
    assert current_usage(limit, now=T0)["resets_at"] == datetime(2030, 2, 1, tzinfo=UTC)
    assert current_usage(limit, now=T0)["window_start"] == datetime(2030, 1, 1, tzinfo=UTC)


async def test_a_reservation_settles_into_the_window_it_was_made_in(backend, make_limit):
    tokens = make_limit("tokens", "minute", 1000)
    decision = await reserve([tokens], ask(input_tokens=100, max_output_tokens=500), now=T0 + 29)

    await settle(decision.reservation, input_tokens=100, output_tokens=300, cost=Decimal(0))

    assert usage(tokens, now=T0 + 29) == (400, 0)
    assert usage(tokens, now=T0 + 31) == (0, 0)


async def test_a_hold_never_settled_lapses_and_a_late_settle_still_charges_once(
    backend, make_limit, settings
):
    settings.LLMPROXY_QUOTA_HOLD_SECONDS = 600
    budget = make_limit("tokens", "month", 1000)
    lost = await reserve([budget], ask(input_tokens=100, max_output_tokens=900), now=T0)
    assert not (await reserve([budget], ask(input_tokens=100, max_output_tokens=900), now=T0 + 599)).admitted

    after_lapse = await reserve([budget], ask(input_tokens=100, max_output_tokens=400), now=T0 + 600)
    await settle(lost.reservation, input_tokens=100, output_tokens=200, cost=Decimal(0))

    assert after_lapse.admitted and after_lapse.output_tokens == 400
    assert usage(budget, now=T0 + 600) == (300, 500)


async def test_cost_limits_count_decimal_dollars_exactly(backend, make_limit):
    cost = make_limit("cost", "day", "0.01")
    # $2 per million input tokens, $8 per million output tokens.
    priced = {"input_price": "2", "output_price": "8"}

    first = await reserve([cost], ask(input_tokens=1000, max_output_tokens=2000, **priced), now=T0)
    await settle(first.reservation, input_tokens=1000, output_tokens=312, cost=Decimal("0.004496"))
    second = await reserve([cost], ask(input_tokens=1000, max_output_tokens=2000, **priced), now=T0)

    # $0.002 of input leaves $0.008, which buys 1000 output tokens.
    assert first.admitted and first.output_tokens == 1000
    # $0.01 - $0.004496 - $0.002 = $0.003504 buys 438 output tokens.
    assert second.admitted and second.output_tokens == 438
    assert usage(cost) == (Decimal("0.004496"), Decimal("0.005504"))


async def test_a_cost_limit_refuses_a_request_whose_input_alone_passes_it(backend, make_limit):
    cost = make_limit("cost", "day", "0.001")

    decision = await reserve([cost], ask(input_tokens=1001, max_output_tokens=10, input_price="1"), now=T0)

    assert not decision.admitted and decision.denied == cost
    assert decision.retry_after == 86400 - 12 * 3600 - 30


async def test_the_headers_describe_the_tightest_requests_and_tokens_limits(backend, make_limit):
    per_minute = make_limit("requests", "minute", 100)
    per_day = make_limit("requests", "day", 3)
    tokens = make_limit("tokens", "hour", 10_000)
    cost = make_limit("cost", "hour", "100")

    limits = [per_minute, per_day, tokens, cost]

    decision = await reserve(limits, ask(input_tokens=200, max_output_tokens=800), now=T0)

    assert decision.headers == {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "2",
        "x-ratelimit-reset-requests": "11h59m30s",
        "x-ratelimit-limit-tokens": "10000",
        "x-ratelimit-remaining-tokens": "9000",
        "x-ratelimit-reset-tokens": "59m30s",
    }


async def test_a_refusal_names_the_refusing_limit_that_resets_last(backend, make_limit):
    per_minute = make_limit("requests", "minute", 1)
    per_hour = make_limit("requests", "hour", 1)
    roomy = make_limit("requests", "day", 100)
    await reserve([per_minute, per_hour, roomy], ask(), now=T0)

    decision = await reserve([per_minute, per_hour, roomy], ask(), now=T0)

    assert decision.denied == per_hour
    assert decision.retry_after == 3570
    assert decision.headers["x-ratelimit-remaining-requests"] == "0"
    assert decision.headers["x-ratelimit-reset-requests"] == "59m30s"


async def test_without_limits_a_request_is_admitted_with_its_whole_output(backend):
    decision = await reserve([], ask(input_tokens=10**9, max_output_tokens=4096))

    assert decision.admitted and decision.output_tokens == 4096
    assert decision.headers == {}
    await settle(decision.reservation, input_tokens=1, output_tokens=1, cost=Decimal(1))


async def test_remaining_tokens_is_the_output_reservation_when_tokens_are_limited(backend, make_limit):
    only_requests = await reserve([make_limit("requests", "minute", 5)], ask(max_output_tokens=300), now=T0)
    with_tokens = await reserve([make_limit("tokens", "minute", 250)], ask(max_output_tokens=300), now=T0)

    assert await remaining_tokens(only_requests.reservation) is None
    assert await remaining_tokens(with_tokens.reservation) == 240


def test_the_reset_headers_are_written_like_openais():
    from quotas.windows import format_reset

    assert [format_reset(s) for s in (1, 59, 60, 360, 3599, 3600, 86400)] == [
        "1s",
        "59s",
        "1m0s",
        "6m0s",
        "59m59s",
        "1h0m0s",
        "24h0m0s",
    ]
