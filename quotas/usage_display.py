"""Each limit's live usage (settled, reserved, reset time) for the admin screens."""

from django.utils.html import format_html, format_html_join

from quotas.applicable import as_limit
from quotas.limiter import current_usage
from quotas.limiter_types import LimiterUnavailable


def usage_of(quota):
    """current_usage() of a QuotaLimit row, or None when the quota store does not answer."""
    try:
        return current_usage(as_limit(quota))
    except LimiterUnavailable:
        return None


def _amount(metric, value):
    return f"${value:.4f}" if metric == "cost" else f"{int(value)}"


def limits_table(quotas):
    rows = []
    for quota in quotas:
        usage = usage_of(quota)
        if usage is None:
            rows.append(
                (
                    quota.scope,
                    quota.metric,
                    quota.period,
                    _amount(quota.metric, quota.limit),
                    "unavailable",
                    "unavailable",
                    "-",
                )
            )
        else:
            rows.append(
                (
                    quota.scope,
                    quota.metric,
                    quota.period,
                    _amount(quota.metric, quota.limit),
                    _amount(quota.metric, usage["used"]),
                    _amount(quota.metric, usage["reserved"]),
                    f"{usage['resets_at']:%Y-%m-%d %H:%M:%S} UTC",
                )
            )
    if not rows:
        return "No limits."
    return format_html(
        "<table><thead><tr><th>Scope</th><th>Metric</th><th>Period</th><th>Limit</th><th>Used (settled)</th>"
        "<th>Reserved</th><th>Resets at</th></tr></thead><tbody>{}</tbody></table>",
        format_html_join("", "<tr>" + "<td>{}</td>" * 7 + "</tr>", rows),
    )
