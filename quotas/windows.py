"""Calendar windows in UTC, as Unix seconds.

Unix time has no leap seconds, so flooring to 60/3600/86400 lands exactly on
UTC minute, hour and day boundaries; months need the calendar.
"""

from datetime import UTC, datetime

_FIXED = {"minute": 60, "hour": 3600, "day": 86400}


def window(period, now):
    """(start, end) of the window of PERIOD that contains NOW (Unix seconds); end is exclusive."""
    if period == "month":
        t = datetime.fromtimestamp(now, UTC)
        start = datetime(t.year, t.month, 1, tzinfo=UTC)
        end = datetime(t.year + t.month // 12, t.month % 12 + 1, 1, tzinfo=UTC)
        return int(start.timestamp()), int(end.timestamp())
    length = _FIXED[period]
    start = int(now // length) * length
    return start, start + length


def format_reset(seconds):
    """A duration the way OpenAI's x-ratelimit-reset-* headers write it (Go's style): 1s, 6m0s, 1h2m3s."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
