"""What the guardrails look for: built-in detectors, operator regexes and word lists.

Every detector finds spans of text (start, end). Built-ins are a candidate
pattern plus, where a pattern alone would guess, a check in Python: the Luhn
digit of a card number, the mod-97 checksum and national length of an IBAN,
an IPv6 address that ``ipaddress`` accepts. They use the ``regex`` module, not
``re``: it skips ahead to a pattern's required literal (the ``@`` of an
email, the ``sk-`` of a key), several times faster on a 2 kB prompt, and it
reports partial matches at the end of a text, which is what the stream masker
needs to know how much of a stream to hold back.

``max_len`` is the longest match a detector reports (for unbounded shapes such
as JWTs, the longest the stream masker waits for): it bounds the hold-back.
"""

import ipaddress
import re as stdlib_re
from dataclasses import dataclass

import regex

from llmproxy.guardrails.regex_timeout import RegexTimeout, bounded_finditer, run_timeout

# The stream hold-back for an operator regex of unbounded width ("\d+"): a
# longer match split across two chunks may be missed, never the text delayed longer.
OPERATOR_MAX_LEN = 256


@dataclass(frozen=True, slots=True)
class Scanner:
    """One candidate pattern, and how to turn a candidate into a span (or reject it)."""

    pattern: regex.Pattern
    validate: object = None  # (text, match) -> (start, end) | None
    # A substring every match contains: its absence skips the scan (a C-speed check).
    required: str = ""
    timed: bool = False  # operator patterns run with a time bound

    def find(self, text: str, pos: int, out: list):
        if self.required and self.required not in text:
            return
        if self.validate is None:
            if self.timed:
                matches = bounded_finditer(self.pattern, text, pos)
            else:
                matches = self.pattern.finditer(text, pos)
            out.extend(m.span() for m in matches if m.end() > m.start())
            return
        while True:
            m = self.pattern.search(text, pos)
            if m is None:
                return
            span = self.validate(text, m)
            if span is not None:
                out.append(span)
                pos = span[1]
            else:
                # A rejected candidate may hide a valid one starting later inside it
                # (a phone number run into a card number): look again from the next position.
                pos = m.start() + 1

    def open_start(self, text: str, pos: int):
        """Start of a match that more text could still complete or extend, if any."""
        end = len(text)
        if self.timed:
            matches = bounded_finditer(self.pattern, text, pos, partial=True)
        else:
            matches = self.pattern.finditer(text, pos, partial=True)
        for m in matches:
            start = m.start()
            if start == end:
                continue  # the module's empty partial match at the very end: nothing to hold
            if m.end() == end:
                return start  # partial, or complete but a longer one may replace it
            # Complete and followed by more text, which may still belong to a longer match
            # ("bob@corp.example" + "." + "org"): the module prefers the complete match, so ask.
            if self._extends(text, start):
                return start
        return None

    def _extends(self, text, start):
        if self.timed:
            try:
                timeout = run_timeout(len(text) - start)
                return self.pattern.fullmatch(text, start, partial=True, timeout=timeout) is not None
            except TimeoutError:
                raise RegexTimeout(self.pattern.pattern)
        return self.pattern.fullmatch(text, start, partial=True) is not None


class Detector:
    __slots__ = ("kind", "label", "max_len", "scanners")

    def __init__(self, kind: str, scanners, max_len: int):
        self.kind = kind
        self.label = f"[REDACTED:{kind.upper()}]"
        self.scanners = tuple(scanners)
        self.max_len = max_len

    def find(self, text: str, pos: int = 0) -> list[tuple[int, int]]:
        """Complete matches from ``pos`` on, in order, without overlaps."""
        spans: list = []
        for scanner in self.scanners:
            scanner.find(text, pos, spans)
        if len(self.scanners) > 1 and len(spans) > 1:
            spans.sort()
            merged = [spans[0]]
            for start, end in spans[1:]:
                if start < merged[-1][1]:
                    merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
                else:
                    merged.append((start, end))
            spans = merged
        return spans

    def open_start(self, text: str, pos: int):
        starts = [s for s in (scanner.open_start(text, pos) for scanner in self.scanners) if s is not None]
        return min(starts) if starts else None

    def __repr__(self):
        return f"<Detector {self.kind}>"


# --- payment cards -------------------------------------------------------------------

_DOUBLED = str.maketrans("0123456789", "0246813579")  # each digit doubled, digits of the result summed


def luhn_valid(digits: str) -> bool:
    return (sum(map(int, digits[-1::-2])) + sum(map(int, digits[-2::-2].translate(_DOUBLED)))) % 10 == 0


_CARD_SEPARATORS = regex.compile(r"[ -]")


def _card(text, m):
    # Luhn over the digits; if it fails, over shorter prefixes ending at a group boundary:
    # "4111 1111 1111 1111 123" (a CVV written after the number) is still a card.
    start, candidate = m.start(), m.group()
    groups = _CARD_SEPARATORS.split(candidate)
    while True:
        digits = "".join(groups)
        if len(digits) < 13:
            return None
        if luhn_valid(digits):
            end = len(digits) + len(groups) - 1
            return start, start + end
        if len(groups) == 1:
            return None
        groups.pop()


# As cards are printed, a major network's first digit (Mastercard 2/5, Amex 3, Visa 4, Discover 6):
# one run of 13-19 digits; groups of four with one separator throughout (4-4-4-4, up to 4-4-4-4-3);
# Amex 4-6-5 and Diners 4-6-4. Not "555 123 4567 ...": a phone number is not the start of a card, and
# a grouped number followed by more groups is a longer number. So a text of near-misses
# ("4111 4111 4111 ...") yields no candidates to check, only a scan.
CARD = Detector(
    "card",
    [
        Scanner(
            regex.compile(
                r"(?<![\w.])[2-6](?:"
                r"\d{12,18}(?!\w)"
                r"|\d{3}([ -])\d{4}\1\d{4}\1\d{1,4}(?:\1\d{1,3})?(?!\w|\1\d)"
                r"|\d{3}([ -])\d{6}\2\d{4,5}(?!\w|\2\d)"
                r")"
            ),
            _card,
        )
    ],
    max_len=19 + 4,
)


# --- IBANs ---------------------------------------------------------------------------

# Length of each country's IBAN (SWIFT IBAN registry).
IBAN_LENGTHS = {
    "AD": 24,
    "AE": 23,
    "AL": 28,
    "AT": 20,
    "AZ": 28,
    "BA": 20,
    "BE": 16,
    "BG": 22,
    "BH": 22,
    "BI": 27,
    "BR": 29,
    "BY": 28,
    "CH": 21,
    "CR": 22,
    "CY": 28,
    "CZ": 24,
    "DE": 22,
    "DJ": 27,
    "DK": 18,
    "DO": 28,
    "EE": 20,
    "EG": 29,
    "ES": 24,
    "FI": 18,
    "FK": 18,
    "FO": 18,
    "FR": 27,
    "GB": 22,
    "GE": 22,
    "GI": 23,
    "GL": 18,
    "GR": 27,
    "GT": 28,
    "HR": 21,
    "HU": 28,
    "IE": 22,
    "IL": 23,
    "IQ": 23,
    "IS": 26,
    "IT": 27,
    "JO": 30,
    "KW": 30,
    "KZ": 20,
    "LB": 28,
    "LC": 32,
    "LI": 21,
    "LT": 20,
    "LU": 20,
    "LV": 21,
    "LY": 25,
    "MC": 27,
    "MD": 24,
    "ME": 22,
    "MK": 19,
    "MN": 20,
    "MR": 27,
    "MT": 31,
    "MU": 30,
    "NI": 28,
    "NL": 18,
    "NO": 15,
    "OM": 23,
    "PK": 24,
    "PL": 28,
    "PS": 29,
    "PT": 25,
    "QA": 29,
    "RO": 24,
    "RS": 22,
    "RU": 33,
    "SA": 24,
    "SC": 31,
    "SD": 18,
    "SE": 24,
    "SI": 19,
    "SK": 24,
    "SM": 27,
    "SO": 23,
    "ST": 25,
    "SV": 28,
    "TL": 23,
    "TN": 24,
    "TR": 26,
    "UA": 29,
    "VA": 22,
    "VG": 24,
    "XK": 20,
    "YE": 30,
}


# ISO 13616: letters as numbers (A=10 ... Z=35), country and check digits moved last, mod 97 = 1.
_IBAN_DIGITS = {ord(ch): str(ord(ch) - 55) for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def iban_valid(compact: str) -> bool:
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
        return False
    return int((compact[4:] + compact[:4]).upper().translate(_IBAN_DIGITS)) % 97 == 1


def _iban(text, m):
    # The candidate may run on into the next words ("... 00 AND"): cut it after
    # the country's IBAN length in characters, spaces not counted.
    start, candidate = m.start(), m.group()
    length = IBAN_LENGTHS.get(candidate[:2])
    if length is None:
        return None
    end = length
    while (wanted := length + candidate.count(" ", 0, end)) != end:
        end = wanted
    if end > len(candidate) or (end < len(candidate) and candidate[end] != " "):
        return None
    if not iban_valid(candidate[:end].replace(" ", "")):
        return None
    return start, start + end


IBAN = Detector(
    "iban",
    [
        Scanner(regex.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}"), _iban),
    ],
    max_len=34 + 8,
)


# --- emails, phone numbers, IP addresses ----------------------------------------------

EMAIL = Detector(
    "email",
    [
        Scanner(
            regex.compile(
                r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@"
                r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9-])"
            ),
            required="@",
        )
    ],
    max_len=254,
)


def _phone(text, m):
    digits = sum(ch.isdigit() for ch in m.group())
    first = m.group()[0]
    if first == "+":
        return m.span() if 8 <= digits <= 15 else None
    if first == "0":
        return m.span() if 9 <= digits <= 12 else None
    return m.span() if digits == 10 else None


_NOT_AFTER = r"(?<![\w+.-])"  # not inside a word, a number, a date or a version
_NOT_BEFORE = r"(?!\w|[.-]\d)"
# One scanner per shape: an alternation of them scans about ten times slower.
PHONE = Detector(
    "phone",
    [
        # International: +44 20 7946 0958, +1-202-555-0143, +4915123456789
        Scanner(
            regex.compile(_NOT_AFTER + r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}" + _NOT_BEFORE),
            _phone,
            required="+",
        ),
        # North American: (212) 555-0143, 212-555-0143, 212.555.0143
        Scanner(
            regex.compile(_NOT_AFTER + r"\([2-9]\d{2}\)[ .-]?\d{3}[ .-]\d{4}" + _NOT_BEFORE),
            _phone,
            required="(",
        ),
        Scanner(regex.compile(_NOT_AFTER + r"[2-9]\d{2}[ .-]\d{3}[ .-]\d{4}" + _NOT_BEFORE), _phone),
        # National, with a trunk prefix: 020 7946 0958, 06 12 34 56 78, 030 12345678
        Scanner(regex.compile(_NOT_AFTER + r"0\d{1,4}(?:[ .-]\d{2,8}){1,4}" + _NOT_BEFORE), _phone),
    ],
    max_len=32,
)


def _ipv6(text, m):
    try:
        ipaddress.IPv6Address(m.group())
    except ValueError:
        return None
    return m.span()


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IP = Detector(
    "ip",
    [
        Scanner(regex.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\w|\.\d)"), required="."),
        Scanner(
            regex.compile(
                r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}"
                rf"(?::{_OCTET}(?:\.{_OCTET}){{3}})?(?![\w:.])"
            ),
            _ipv6,
            required=":",
        ),
    ],
    max_len=45,
)


# --- API keys and tokens --------------------------------------------------------------

SECRET = Detector(
    "secret",
    [
        # OpenAI (sk-..., sk-proj-...) and Anthropic (sk-ant-api03-...): at least one digit.
        Scanner(regex.compile(r"(?<![\w-])sk-(?=[A-Za-z_-]*\d)[A-Za-z0-9_-]{20,}"), required="sk-"),
        Scanner(regex.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Za-z0-9])")),
        Scanner(regex.compile(r"(?<![\w-])gh[pousr]_[A-Za-z0-9]{36,}"), required="_"),
        Scanner(regex.compile(r"(?<![\w-])github_pat_[A-Za-z0-9_]{22,}"), required="github_pat_"),
        Scanner(
            regex.compile(r"(?<![\w-])eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
            required="eyJ",
        ),
        # This proxy's own keys.
        Scanner(
            regex.compile(r"(?<![\w-])lp-[A-Za-z0-9]{8}-[A-Za-z0-9]{32,128}(?![A-Za-z0-9])"), required="lp-"
        ),
    ],
    max_len=1024,
)

BUILT_IN = {d.kind: d for d in (EMAIL, PHONE, CARD, IBAN, SECRET, IP)}


# --- operator rules --------------------------------------------------------------------


def operator_max_len(pattern: str) -> int:
    """The longest match of ``pattern`` if bounded (and short), else OPERATOR_MAX_LEN."""
    try:
        from re import _parser as sre_parse  # the width is not public API in either module
    except ImportError:  # pragma: no cover - Python < 3.11
        import sre_parse
    try:
        width = sre_parse.parse(pattern).getwidth()[1]
    except (stdlib_re.error, RecursionError, OverflowError, ValueError):
        return OPERATOR_MAX_LEN
    return max(1, min(width, OPERATOR_MAX_LEN))


def regex_detector(pattern: str) -> Detector:
    """An operator's pattern, compiled as given (checked for safety when saved), run with a time bound."""
    return Detector("regex", [Scanner(regex.compile(pattern), timed=True)], operator_max_len(pattern))


def wordlist_detector(words) -> Detector:
    words = sorted({w.strip() for w in words if w and w.strip()}, key=len, reverse=True)
    if not words:
        raise ValueError("a word list needs at least one word")
    # Whole words, any case; longest first so "credit card" wins over "credit".
    pattern = regex.compile(
        r"(?<!\w)(?:" + "|".join(regex.escape(w) for w in words) + r")(?!\w)", regex.IGNORECASE
    )
    return Detector("wordlist", [Scanner(pattern)], max(len(w) for w in words))


def redact(text: str, spans) -> str:
    """``text`` with each (start, end, label) replaced by its label; overlapping spans merge."""
    if not spans:
        return text
    parts = []
    at = 0
    for start, end, label in sorted(spans):
        if end <= at:
            continue  # inside a span already replaced
        if start >= at:
            parts.append(text[at:start])
            parts.append(label)
        at = end  # an overlapping span extends the one before it
    parts.append(text[at:])
    return "".join(parts)
