"""DURATION values of the commands and settings: ``30s``, ``15m``, ``24h``, ``90d``."""

import re
from datetime import timedelta

_DURATION_RE = re.compile(r"^\s*(\d{1,9})\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text):
    """timedelta for '30s', '15m', '24h', '90d', '2w'; ValueError otherwise."""
    match = _DURATION_RE.match(text if isinstance(text, str) else "")
    if not match:
        raise ValueError(f"invalid duration {text!r}: use a number and a unit, like 30s, 15m, 24h or 90d")
    amount, unit = int(match.group(1)), match.group(2)
    try:
        return timedelta(**{_UNITS[unit]: amount})
    except OverflowError:
        raise ValueError(f"duration {text!r} is too long")
