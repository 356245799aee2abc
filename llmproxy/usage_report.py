"""The numbers of the usage dashboard: the hourly rollups summed by day, model, key and tenant,
and latency percentiles from the request log.

Counts, tokens, cost and errors come from TokenUsageMetric (one row per hour, tenant,
key and model), so a year of a busy tenant is a few thousand rows. Latency is not in
the rollups: its median and 95th percentile come from RequestLog (answered requests,
status below 400), by PERCENTILE_CONT on PostgreSQL and, on SQLite (the embedded,
small set-up), in Python over at most LATENCY_SAMPLE_CAP rows. Request logs are
purged after the tenant's retention, so latency reaches back only that far.
"""

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db import connections, router
from django.db.models import Aggregate, Count, F, FloatField, Sum
from django.db.models.functions import TruncDate

from audit.models import RequestLog
from quotas.models import TokenUsageMetric

TOTALS = ("requests", "input_tokens", "output_tokens", "cost", "errors", "cache_hits")
TOP = 12  # groups drawn one by one; the rest are summed as "others"
LATENCY_SAMPLE_CAP = 200_000
OTHERS = "(others)"
DELETED_KEYS = "(deleted keys)"


@dataclass
class Usage:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)
    errors: int = 0
    cache_hits: int = 0

    @property
    def tokens(self):
        return self.input_tokens + self.output_tokens

    def add(self, other: "Usage"):
        for name in TOTALS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Latency:
    p50: float | None = None
    p95: float | None = None
    count: int = 0


@dataclass
class Row:
    label: str
    usage: Usage
    latency: Latency = field(default_factory=Latency)
    link: str = ""  # the tenant's own page, on the all-tenants page


@dataclass
class Report:
    start: date
    end: date  # inclusive
    total: Usage
    days: list[Row]  # every day of the range, oldest first, empty days included
    models: list[Row]
    keys: list[Row]
    tenants: list[Row]  # only when several tenants are shown
    latency_capped: bool = False


def usage_report(*, tenant_ids: list[int] | None, start: date, end: date, per_tenant=False) -> Report:
    """The report of these tenants (None: all) from ``start`` to ``end``, both days included."""
    since = datetime.combine(start, time.min, tzinfo=UTC)
    until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
    rollups = TokenUsageMetric.objects.filter(bucket__gte=since, bucket__lt=until)
    logs = RequestLog.objects.filter(created_at__gte=since, created_at__lt=until, status__lt=400)
    if tenant_ids is not None:
        rollups = rollups.filter(tenant_id__in=tenant_ids)
        logs = logs.filter(tenant_id__in=tenant_ids)

    by_day = _sums(rollups, TruncDate("bucket", tzinfo=UTC))
    day_latency, capped = _percentiles(logs, TruncDate("created_at", tzinfo=UTC))
    days = []
    for offset in range((end - start).days + 1):
        day = start + timedelta(days=offset)
        days.append(Row(day.isoformat(), by_day.get(day, Usage()), day_latency.get(day, Latency())))

    model_latency, capped_too = _percentiles(logs, F("model"))
    models = [
        Row(name, usage, model_latency.get(name, Latency()))
        for name, usage in _sums(rollups, F("model")).items()
    ]

    keys = []
    key_names = {}
    fields = ("api_key_id", "api_key__prefix", "api_key__name", "tenant__slug")
    for key_id, prefix, name, slug in rollups.order_by().values_list(*fields).distinct():
        label = f"{prefix} {name}".strip() if key_id is not None else DELETED_KEYS
        key_names[key_id] = f"{slug}: {label}" if per_tenant else label
    for key_id, usage in _sums(rollups, F("api_key_id")).items():
        keys.append(Row(key_names.get(key_id, DELETED_KEYS), usage))

    tenants = []
    if per_tenant:
        tenants = [Row(slug, usage) for slug, usage in _sums(rollups, F("tenant__slug")).items()]

    total = Usage()
    for row in days:
        total.add(row.usage)
    return Report(start, end, total, days, _top(models), _top(keys), _top(tenants), capped or capped_too)


def _sums(rollups, group) -> dict:
    rows = (
        rollups.annotate(group=group)
        .values("group")
        .annotate(**{f"t_{name}": Sum(name) for name in TOTALS})
        .order_by("group")
    )
    return {row["group"]: Usage(**{name: row[f"t_{name}"] or 0 for name in TOTALS}) for row in rows}


def _top(rows: list[Row]) -> list[Row]:
    """The busiest groups first; past TOP of them, the rest summed in one row."""
    rows = sorted(rows, key=lambda row: (-row.usage.requests, -row.usage.cost, row.label))
    if len(rows) <= TOP:
        return rows
    others = Usage()
    for row in rows[TOP - 1 :]:
        others.add(row.usage)
    return [*rows[: TOP - 1], Row(OTHERS, others)]


class PercentileCont(Aggregate):
    # PostgreSQL's ordered-set aggregate; Django ships no percentile.
    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, fraction, **extra):
        super().__init__(expression, fraction=float(fraction), **extra)


def _percentiles(logs, group) -> tuple[dict, bool]:
    """{group: Latency} and whether the rows were capped (SQLite only)."""
    alias = router.db_for_read(RequestLog)
    if connections[alias].vendor == "postgresql":
        rows = (
            logs.annotate(group=group)
            .values("group")
            .annotate(
                p50=PercentileCont("latency_ms", 0.5), p95=PercentileCont("latency_ms", 0.95), n=Count("id")
            )
            .order_by("group")
        )
        return {row["group"]: Latency(row["p50"], row["p95"], row["n"]) for row in rows}, False
    values = defaultdict(list)
    pairs = logs.annotate(group=group).order_by("-created_at").values_list("group", "latency_ms")
    count = 0
    for key, latency in pairs[:LATENCY_SAMPLE_CAP].iterator():
        values[key].append(latency)
        count += 1
    found = {}
    for key, latencies in values.items():
        latencies.sort()
        found[key] = Latency(percentile(latencies, 0.5), percentile(latencies, 0.95), len(latencies))
    return found, count >= LATENCY_SAMPLE_CAP


def percentile(ordered: list[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks: what PERCENTILE_CONT computes."""
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
