"""Checks of single values read from the config file.

Each check takes the value YAML gave and returns it as the database stores it,
or raises ValueError with a message that says what was expected.
"""

import datetime
import math
import re
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError

from llmproxy.durations import parse_duration
from providers.validators import validate_base_url

# PositiveIntegerField's ceiling on every database Django supports.
MAX_WHOLE = 2**31 - 1
MAX_DURATION = datetime.timedelta(days=100 * 365)

_SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_ENV_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODEL_NAME_RE = re.compile(r"^\S{1,200}$")

# Headers that carry a provider credential: the file names credentials only as
# environment variables, so these cannot be smuggled in as extra headers either.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "api-key", "x-api-key"})


def plain_number(number):
    """1000 rather than 1.0E+3 or 1000.000000; 12.5 rather than 12.500000."""
    text = f"{number:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def describe(value):
    """How YAML read a value, for error messages."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, datetime.date):
        return f"the date {value.isoformat()}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, str):
        return repr(value)
    return type(value).__name__


def _string(value):
    if not isinstance(value, str):
        hint = " (quote it)" if isinstance(value, bool | int | float | datetime.date) else ""
        raise ValueError(f"expected a string, got {describe(value)}{hint}")
    return value


def text(max_length, *, required=False):
    def check(value):
        value = _string(value)
        if required and not value.strip():
            raise ValueError("must not be empty")
        if len(value) > max_length:
            raise ValueError(f"at most {max_length} characters")
        return value

    return check


def slug(value):
    value = _string(value)
    if not _SLUG_RE.match(value):
        raise ValueError(
            f"{value!r} is not a tenant slug (lowercase letters, digits and '-', not at either end, max 63)"
        )
    return value


def optional_slug(value):
    return None if value is None else slug(value)


def optional_text(max_length):
    check = text(max_length, required=True)
    return lambda value: None if value is None else check(value)


def model_name(value):
    value = _string(value)
    if not _MODEL_NAME_RE.match(value):
        raise ValueError(f"model name {value!r} must be 1 to 200 characters without spaces")
    return value


def model_names(value):
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"expected a list of model names, got {describe(value)}")
    for item in value:
        model_name(item)
    if len(set(value)) != len(value):
        raise ValueError("a model name is listed twice")
    return value


def env_var(value):
    value = _string(value)
    if value and not _ENV_VAR_RE.match(value):
        raise ValueError(f"{value!r} is not an environment variable name (letters, digits and _)")
    return value


def base_url(value):
    value = _string(value)
    if value:
        try:
            validate_base_url(value)
        except ValidationError as exc:
            raise ValueError(exc.messages[0])
    return value


def boolean(value):
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {describe(value)}")
    return value


def whole(minimum=0, maximum=MAX_WHOLE):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a whole number, got {describe(value)}")
        if not minimum <= value <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum}")
        return value

    return check


def seconds(value):
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number of seconds, got {describe(value)}")
    if not math.isfinite(value) or value < 0.1:
        raise ValueError("must be at least 0.1 seconds")
    return float(value)


def decimal(max_digits, places):
    """A number >= 0 that fits DECIMAL(max_digits, places); a quoted number is taken too."""
    ceiling = Decimal(10) ** (max_digits - places)

    def check(value):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"expected a number, got {describe(value)}")
        try:
            # repr() of a float is its shortest exact decimal form: 0.1 stays 0.1.
            number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
        except InvalidOperation:
            raise ValueError(f"expected a number, got {describe(value)}")
        if not number.is_finite() or number < 0:
            raise ValueError("must be a number of at least 0")
        if number >= ceiling or -number.normalize().as_tuple().exponent > places:
            raise ValueError(f"must be below {ceiling} with at most {places} decimal places")
        return number

    return check


def choice(values):
    def check(value):
        if value not in values:
            raise ValueError(f"{describe(value)} is not one of {', '.join(values)}")
        return value

    return check


def headers(value):
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError("expected a mapping of header name to string value")
    for name in value:
        if name.strip().lower() in CREDENTIAL_HEADERS:
            raise ValueError(
                f"{name!r} carries a credential, and credentials are never written in the file: "
                "put it in an environment variable and name that with api_key_env"
            )
    return value


def _is_json(value):
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def options(value):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping, got {describe(value)}")
    if not _is_json(value):
        raise ValueError("expected plain values (strings, numbers, booleans, lists, mappings)")
    return value


def duration(value):
    if value is None:
        return None
    value = _string(value)
    span = parse_duration(value)
    if not span or span > MAX_DURATION:
        raise ValueError(f"duration {value!r} must be more than 0 and at most 100 years")
    return span


def optional_seconds(value):
    return None if value is None else seconds(value)


def _names(value, what):
    """A list of distinct non-empty strings, sorted: the file's order means nothing for a set."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"expected a list of {what}, got {describe(value)}")
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"expected a list of {what}, and {describe(item)} is not one")
    if len(set(value)) != len(value):
        raise ValueError(f"one of the {what} is listed twice")
    return sorted(value)


def key_names(value):
    return _names(value, "API key names")


def words(value):
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(w, str) and w.strip() for w in value):
        raise ValueError(f"expected a list of words or phrases, got {describe(value)}")
    if len(set(value)) != len(value):
        raise ValueError("a word is listed twice")
    return value
