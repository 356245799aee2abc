"""The order in which each routing strategy tries one model's routes."""

import math
import random
from collections import Counter
from decimal import Decimal

import pytest

from providers import strategies
from providers.adapters.base import ProviderTarget, RouteTarget


def provider(name="p"):
    return ProviderTarget(
        id=1,
        name=name,
        kind="mock",
        base_url="",
        api_key_env="",
        encrypted_api_key="",
        api_version="",
        extra_headers={},
        timeout=30.0,
        connect_timeout=5.0,
        options={},
    )


def route(route_id, priority=0, weight=1, input_price="0", output_price="0"):
    return RouteTarget(
        id=route_id,
        model="m",
        upstream_model=f"up-{route_id}",
        priority=priority,
        weight=weight,
        input_price=Decimal(input_price),
        output_price=Decimal(output_price),
        provider=provider(),
    )


def ids(targets):
    return [t.id for t in targets]


def first_picks(strategy, targets, n=1000, seed=1234):
    rng = random.Random(seed)
    return Counter(strategies.order(strategy, targets, rng)[0].id for _ in range(n))


def assert_binomial_share(count, n, share):
    # Within 4 standard deviations of n * share: fails by chance about once in 16,000 runs.
    sigma = math.sqrt(n * share * (1 - share))
    assert abs(count - n * share) <= 4 * sigma, (count, n * share, sigma)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_weighted_splits_a_thousand_first_picks_by_weight(seed):
    targets = [route(1, weight=1), route(2, weight=3), route(3, weight=6)]
    picks = first_picks("weighted", targets, seed=seed)
    assert sum(picks.values()) == 1000
    for target in targets:
        assert_binomial_share(picks[target.id], 1000, target.weight / 10)


def test_weighted_ignores_priority_and_keeps_zero_weight_routes_as_standby():
    targets = [route(1, priority=0, weight=1), route(2, priority=5, weight=1), route(3, priority=0, weight=0)]
    picks = first_picks("weighted", targets)
    assert set(picks) == {1, 2}
    assert_binomial_share(picks[2], 1000, 0.5)
    for _ in range(50):
        assert strategies.order("weighted", targets)[-1].id == 3


def test_priority_tries_lower_numbers_first_and_shares_equal_priorities_by_weight():
    targets = [
        route(1, priority=0, weight=1),
        route(2, priority=0, weight=4),
        route(3, priority=1, weight=100),
    ]
    rng = random.Random(7)
    orders = [ids(strategies.order("priority", targets, rng)) for _ in range(1000)]
    assert all(order[-1] == 3 for order in orders)
    assert_binomial_share(sum(order[0] == 2 for order in orders), 1000, 0.8)


def test_an_unknown_strategy_falls_back_to_priority():
    targets = [route(2, priority=1), route(1, priority=0)]
    assert ids(strategies.order("no-such-strategy", targets)) == [1, 2]


def test_round_robin_starts_one_route_further_on_each_request():
    targets = [route(41, priority=1), route(42, priority=0), route(43, priority=2)]
    orders = [ids(strategies.order("round_robin", targets)) for _ in range(4)]
    assert orders == [[42, 41, 43], [41, 43, 42], [43, 42, 41], [42, 41, 43]]


def test_round_robin_keeps_a_separate_turn_per_set_of_routes():
    first = [route(51), route(52)]
    other = [route(61), route(62)]
    assert ids(strategies.order("round_robin", first)) == [51, 52]
    assert ids(strategies.order("round_robin", other)) == [61, 62]
    assert ids(strategies.order("round_robin", first)) == [52, 51]


def test_least_latency_prefers_the_fastest_moving_average_and_measures_new_routes_first():
    tracker = strategies.LatencyTracker(alpha=0.5)
    targets = [route(1), route(2), route(3)]
    tracker.observe(1, 300)
    tracker.observe(2, 100)
    assert ids(tracker(targets)) == [3, 2, 1]  # 3 has never been measured
    tracker.observe(3, 500)
    assert ids(tracker(targets)) == [2, 1, 3]
    # Recent latencies move the average: route 2 slows down, route 1 speeds up.
    for _ in range(4):
        tracker.observe(2, 900)
        tracker.observe(1, 50)
    assert ids(tracker(targets)) == [1, 3, 2]
    assert tracker.average(1) == pytest.approx(50 + 250 / 16)


def test_least_latency_breaks_ties_by_priority():
    tracker = strategies.LatencyTracker()
    assert ids(tracker([route(9, priority=2), route(8, priority=1)])) == [8, 9]


def test_lowest_cost_orders_by_the_routes_prices():
    targets = [
        route(1, input_price="2.50", output_price="10"),
        route(2, input_price="0.15", output_price="0.60"),
        route(3, input_price="3", output_price="15", priority=0),
        route(4, input_price="0.15", output_price="0.60", priority=3),
    ]
    assert ids(strategies.order("lowest_cost", targets)) == [2, 4, 1, 3]


def test_every_strategy_returns_every_route_once():
    targets = [route(i, priority=i % 2, weight=i % 3, input_price=str(i)) for i in range(1, 8)]
    for name in strategies.STRATEGIES:
        assert sorted(ids(strategies.order(name, targets))) == list(range(1, 8)), name
