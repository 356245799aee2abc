"""Redaction of prompt and completion text before a tenant that opted in stores it.

redact(text) replaces e-mail addresses, phone numbers, payment card numbers
(Luhn-checked) and secret-looking tokens with ``[REDACTED:KIND]`` (KIND is
EMAIL, PHONE, CARD or SECRET). It errs towards redacting: a stored log is not
the place for a near miss. Every pattern is bounded, so the cost stays linear
in the text's length (no pattern backtracks over a long run of characters).
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _luhn(digits):
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _is_card(match):
    digits = re.sub(r"\D", "", match.group("value"))
    return 13 <= len(digits) <= 19 and _luhn(digits)


def _is_phone(match):
    return 9 <= len(re.sub(r"\D", "", match.group("value"))) <= 15


def _looks_random(match):
    # Long words of letters and digits mixed; not identifiers such as UUIDs.
    value = match.group("value")
    digits = sum(ch.isdigit() for ch in value)
    letters = sum(ch.isalpha() for ch in value)
    return digits >= 2 and letters >= 2 and not _UUID.match(value)


@dataclass(frozen=True)
class _Rule:
    kind: str
    pattern: re.Pattern
    accept: Callable | None = None  # a further check of a match; only the "value" group is replaced


_SECRET_WORDS = (
    r"password|passwd|pwd|passphrase|secret|client[_-]?secret|api[_-]?key|apikey|access[_-]?key"
    r"|access[_-]?token|auth[_-]?token|refresh[_-]?token|token|private[_-]?key"
)

# Order matters: secrets first (a key may hold digits that look like a phone),
# then e-mails, cards before phones (a spaced card number looks like a phone).
_RULES = (
    _Rule(
        "SECRET",
        re.compile(
            r"(?P<value>-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----.{0,10000}?-----END [A-Z ]{0,40}PRIVATE KEY-----)",  # noqa: E501
            re.DOTALL,
        ),
    ),
    _Rule(
        "SECRET",
        re.compile(
            r"(?P<value>\b(?:"
            r"lp-[A-Za-z0-9]{8}-[A-Za-z0-9]{32,128}"  # this proxy's keys
            r"|sk-(?:proj-|ant-(?:api\d\d-)?|svcacct-)?[A-Za-z0-9_-]{20,200}"  # OpenAI, Anthropic
            r"|(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,100}|github_pat_[A-Za-z0-9_]{22,255}"  # GitHub
            r"|xox[abposr]-[A-Za-z0-9-]{10,200}"  # Slack
            r"|(?:AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key id
            r"|AIza[0-9A-Za-z_-]{35}"  # Google API key
            r"|(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,200}"  # Stripe
            r"|eyJ[A-Za-z0-9_-]{8,2000}\.eyJ[A-Za-z0-9_-]{8,8000}\.[A-Za-z0-9_-]{8,2000}"  # JWT
            r"))"
        ),
    ),
    _Rule("SECRET", re.compile(r"(?i)\bbearer\s{1,5}(?P<value>[A-Za-z0-9._~+/-]{16,2000}=*)")),
    _Rule(
        "SECRET",
        re.compile(
            rf"(?i)\b(?:{_SECRET_WORDS})\b[\"']?\s{{0,5}}[:=]\s{{0,5}}[\"']?(?P<value>[^\s\"',;]{{4,2000}})"
        ),
    ),
    _Rule("SECRET", re.compile(r"(?<![A-Za-z0-9_-])(?P<value>[A-Za-z0-9_-]{32,4000}={0,2})"), _looks_random),
    _Rule(
        "EMAIL",
        re.compile(
            r"(?<![A-Za-z0-9._%+-])(?P<value>[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}"
            r"\.[A-Za-z]{2,24})\b"
        ),
    ),
    _Rule("CARD", re.compile(r"(?<![\d-])(?P<value>\d(?:[ -]?\d){12,18})(?![\d-])"), _is_card),
    _Rule(
        "PHONE",
        re.compile(
            r"(?<![\w+])(?P<value>"
            r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}"  # international: +44 20 7946 0958
            r"|(?:\(\d{3}\)\s?|\d{3}[ .-])\d{3}[ .-]\d{4}"  # North American: (555) 123-4567
            r"|0\d{1,4}[ /-]\d{3,8}(?:[ -]\d{2,5})?"  # national with a trunk 0: 030 1234567
            r")(?![\w])"
        ),
        _is_phone,
    ),
)


def _replace(rule):
    marker = f"[REDACTED:{rule.kind}]"

    def replace(match):
        if rule.accept is not None and not rule.accept(match):
            return match.group(0)
        start, end = match.span("value")
        whole_start = match.start()
        text = match.group(0)
        return text[: start - whole_start] + marker + text[end - whole_start :]

    return replace


_REPLACERS = tuple((rule.pattern, _replace(rule)) for rule in _RULES)


def redact(text: str) -> str:
    if not text:
        return text
    for pattern, replace in _REPLACERS:
        text = pattern.sub(replace, text)
    return text
