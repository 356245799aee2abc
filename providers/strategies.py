"""Routing strategies: the order in which one public model's routes are tried.

Each strategy returns every route, best first; the router walks that order
and moves to the next route when one fails, so the order is also the
fallback order.

- priority (the default): lower priority first; routes of equal priority
  share the first pick by weight.
- weighted: the first pick is random by weight over all routes, whatever
  their priority; the rest follow by weight the same way. A route of weight 0
  is never picked first: it is a standby, tried only when the others failed.
- round_robin: each request starts one route further (per process).
- least_latency: the lowest moving average of recent latencies first (per
  process); a route not measured yet goes first, so every route gets measured.
- lowest_cost: the cheapest first, by input + output price per million tokens.

Ties in every strategy fall back to (priority, -weight, id), the table's order.
"""

import itertools
import random

from providers.adapters.base import RouteTarget


def _table_order(target: RouteTarget):
    return (target.priority, -target.weight, target.id)


def weighted_shuffle(targets, rng=random) -> list[RouteTarget]:
    """Every route, each next one picked at random by weight among those left; weight 0 goes last."""
    left = [t for t in targets if t.weight > 0]
    standby = sorted((t for t in targets if t.weight <= 0), key=_table_order)
    ordered = []
    while left:
        pick = rng.choices(range(len(left)), weights=[t.weight for t in left])[0]
        ordered.append(left.pop(pick))
    return ordered + standby


def by_priority(targets, rng=random) -> list[RouteTarget]:
    ordered = []
    for _, group in itertools.groupby(sorted(targets, key=_table_order), key=lambda t: t.priority):
        ordered.extend(weighted_shuffle(list(group), rng))
    return ordered


def weighted(targets, rng=random) -> list[RouteTarget]:
    return weighted_shuffle(sorted(targets, key=_table_order), rng)


class RoundRobin:
    def __init__(self):
        self._turns: dict[tuple, int] = {}

    def __call__(self, targets, rng=random) -> list[RouteTarget]:
        ordered = sorted(targets, key=_table_order)
        if not ordered:
            return ordered
        key = tuple(t.id for t in ordered)
        turn = self._turns.get(key, 0)
        if len(self._turns) > 10_000:  # route sets that no longer exist
            self._turns.clear()
        self._turns[key] = turn + 1
        start = turn % len(ordered)
        return ordered[start:] + ordered[:start]


class LatencyTracker:
    """An exponentially weighted moving average of each route's latency, in this process."""

    def __init__(self, alpha=0.3):
        self.alpha = alpha
        self._averages: dict[int, float] = {}

    def observe(self, route_id: int, latency_ms: float):
        previous = self._averages.get(route_id)
        if previous is None:
            self._averages[route_id] = latency_ms
        else:
            self._averages[route_id] = previous + self.alpha * (latency_ms - previous)

    def average(self, route_id: int) -> float | None:
        return self._averages.get(route_id)

    def forget(self):
        self._averages.clear()

    def __call__(self, targets, rng=random) -> list[RouteTarget]:
        def key(target):
            average = self._averages.get(target.id)
            return (average is not None, average or 0.0, *_table_order(target))

        return sorted(targets, key=key)


def lowest_cost(targets, rng=random) -> list[RouteTarget]:
    return sorted(targets, key=lambda t: (t.input_price + t.output_price, *_table_order(t)))


round_robin = RoundRobin()
latency = LatencyTracker()

STRATEGIES = {
    "priority": by_priority,
    "weighted": weighted,
    "round_robin": round_robin,
    "least_latency": latency,
    "lowest_cost": lowest_cost,
}


def order(strategy: str, targets, rng=random) -> list[RouteTarget]:
    return STRATEGIES.get(strategy, by_priority)(targets, rng)
