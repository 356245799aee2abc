"""Usage to chart, and a reader of the charts the dashboard draws (figure data-chart, mark data-*)."""

from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from html.parser import HTMLParser

from audit.models import RequestLog
from keys.services import api_key_create
from quotas.models import TokenUsageMetric


def today():
    return datetime.now(UTC).date()


def at(days_ago, hour):
    return datetime.combine(today() - timedelta(days=days_ago), time(hour), tzinfo=UTC)


def seed_usage(acme, globex):
    """Hourly rollups of two acme keys and one globex key over a few days, and request logs for latency."""
    backend, _ = api_key_create(tenant=acme, name="backend")
    batch, _ = api_key_create(tenant=acme, name="batch")
    outsider, _ = api_key_create(tenant=globex, name="globex-secret-project")
    rows = [
        # tenant, key, model, days ago, hour, requests, input, output, cost, errors, cache hits
        (acme, backend, "gpt-4o", 0, 9, 40, 4000, 1000, "0.120000", 2, 5),
        (acme, backend, "gpt-4o", 0, 10, 10, 1000, 500, "0.030000", 0, 0),
        (acme, batch, "claude-haiku", 0, 11, 5, 800, 200, "0.004000", 1, 0),
        (acme, backend, "claude-haiku", 1, 23, 20, 2000, 600, "0.010000", 0, 1),
        (acme, batch, "gpt-4o", 3, 0, 7, 700, 70, "0.021000", 3, 0),
        (acme, None, "gpt-4o", 3, 5, 1, 10, 10, "0.000100", 0, 0),  # a key deleted since
        (acme, backend, "gpt-4o", 20, 12, 999, 9, 9, "9.000000", 9, 9),  # outside the default range
        (globex, outsider, "globex-model", 0, 9, 300, 30000, 3000, "1.500000", 30, 0),
    ]
    for tenant, key, model, days_ago, hour, requests, inp, out, cost, errors, hits in rows:
        TokenUsageMetric.objects.create(
            bucket=at(days_ago, hour),
            tenant=tenant,
            api_key=key,
            model=model,
            requests=requests,
            input_tokens=inp,
            output_tokens=out,
            cost=Decimal(cost),
            errors=errors,
            cache_hits=hits,
        )
    for i, latency in enumerate((100.0, 200.0, 300.0, 400.0)):
        log(acme, backend, "gpt-4o", at(0, 9) + timedelta(minutes=i), latency)
    log(acme, backend, "gpt-4o", at(0, 9), 9999.0, status=502)  # errors are not latency
    log(acme, batch, "claude-haiku", at(1, 23), 50.0)
    log(globex, outsider, "globex-model", at(0, 9), 7777.0)
    return {"backend": backend, "batch": batch, "outsider": outsider}


def log(tenant, key, model, when, latency, status=200):
    RequestLog.objects.create(
        created_at=when,
        request_id=f"req_{when.timestamp()}_{latency}",
        tenant=tenant,
        api_key=key,
        key_prefix=key.prefix,
        endpoint="chat",
        model=model,
        status=status,
        latency_ms=latency,
    )


def expected_by_day(tenants, start, end, field):
    """What the rollups say, summed per UTC day (every day of the range, zeros included)."""
    sums = defaultdict(int)
    for row in TokenUsageMetric.objects.filter(tenant__in=tenants):
        sums[row.bucket.date().isoformat()] += getattr(row, field)
    days = [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    return {day: sums.get(day, 0) for day in days}


class Charts(HTMLParser):
    """{chart id: [(series, label, value text)]} of every mark in a page."""

    def __init__(self, html):
        super().__init__()
        self.charts = {}
        self._chart = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure" and "data-chart" in attrs:
            self._chart = self.charts.setdefault(attrs["data-chart"], [])
        elif tag in ("rect", "circle") and "data-value" in attrs and self._chart is not None:
            self._chart.append((attrs["data-series"], attrs["data-label"], attrs["data-value"]))

    def handle_endtag(self, tag):
        if tag == "figure":
            self._chart = None

    def values(self, chart, series):
        return {label: value for s, label, value in self.charts[chart] if s == series}
