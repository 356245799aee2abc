"""Operator regexes: refused when saved if they backtrack catastrophically, and run with a time bound.

Two lines of defence, because no check of a pattern is complete:

- ``check_pattern`` (model validation, the command) compiles the pattern,
  refuses one that matches the empty string, and runs it against inputs built
  to make backtracking explode: long runs of the characters the pattern
  names, and of pairs of them, ending in a character that makes the match
  fail (``(a+)+$`` on ``aaaa…a!``). A pattern that cannot scan each of them
  within CHECK_SECONDS is refused.
- every scan on the request path goes through ``bounded_finditer``: the
  ``regex`` module's ``timeout=`` aborts a scan that runs too long, so a
  pattern that slipped through costs one request a few milliseconds, not the
  process its event loop.

The ``regex`` module checks its clock every so many steps, so a scan may
overrun its timeout (about 3x on this kind of machine); the bounds below are
chosen with that in mind.
"""

import time

import regex

MAX_PATTERN_LENGTH = 1000
# Per adversarial input, and for the whole check.
CHECK_SECONDS = 0.05
CHECK_TOTAL_SECONDS = 1.5
# A scan on the request path: a base plus an allowance per character
# (a linear pattern scans a character in well under 100 ns).
RUN_BASE_SECONDS = 0.01
RUN_SECONDS_PER_CHAR = 100e-9

_FILLERS = ("a", "A", "1", " ", "x", "_", ".", "-", "@", ":", "/", "\t", "é")
# Exponential blow-ups show on short runs; polynomial ones on a prompt-sized text.
_LENGTHS = (48, 512, 4096)


class RegexTimeout(Exception):
    """A scan ran past its time bound."""


class UnsafePattern(ValueError):
    """A pattern that must not be saved: the message says why, in one line."""


def run_timeout(length: int) -> float:
    return RUN_BASE_SECONDS + length * RUN_SECONDS_PER_CHAR


def bounded_finditer(pattern: regex.Pattern, text: str, pos: int = 0, *, partial: bool = False) -> list:
    try:
        return list(pattern.finditer(text, pos, partial=partial, timeout=run_timeout(len(text) - pos)))
    except TimeoutError:
        raise RegexTimeout(pattern.pattern)


def _adversarial_inputs(pattern: str):
    literals = list(dict.fromkeys(ch for ch in pattern if ch.isalnum() or ch in " _-.@:/#=,;'\""))[:10]
    singles = list(dict.fromkeys(literals + list(_FILLERS)))
    pairs = [a + b for a in literals[:6] for b in literals[:6] if a != b]
    for length in _LENGTHS:
        for unit in singles + pairs:
            run = unit * (length // len(unit))
            yield run + "!"
            yield run + "\n"


def check_pattern(pattern: str) -> regex.Pattern:
    """The compiled pattern, or UnsafePattern if it is invalid, too long, matches nothing, or backtracks."""
    if not isinstance(pattern, str) or not pattern:
        raise UnsafePattern("a regular expression is required")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise UnsafePattern(f"the regular expression is longer than {MAX_PATTERN_LENGTH} characters")
    try:
        compiled = regex.compile(pattern)
    except (regex.error, OverflowError, RecursionError, ValueError) as exc:
        raise UnsafePattern(f"invalid regular expression: {str(exc).splitlines()[0]}")
    try:
        if compiled.search("", timeout=CHECK_SECONDS) is not None:
            raise UnsafePattern("the regular expression matches the empty string (it would match everywhere)")
    except TimeoutError:
        raise UnsafePattern("the regular expression is too slow")
    deadline = time.monotonic() + CHECK_TOTAL_SECONDS
    for text in _adversarial_inputs(pattern):
        # Twice before refusing: a busy machine can stall one scan, not two in a row.
        if not _scans_in_time(compiled, text) and not _scans_in_time(compiled, text):
            raise UnsafePattern(
                f"the regular expression backtracks catastrophically (over {CHECK_SECONDS * 1000:.0f} ms on "
                f"{len(text)} characters like {text[:6]!r}...); avoid nested quantifiers such as (a+)+"
            )
        if time.monotonic() > deadline:
            raise UnsafePattern("the regular expression is too slow to check; simplify it")
    return compiled


def _scans_in_time(compiled, text) -> bool:
    started = time.monotonic()
    try:
        compiled.search(text, timeout=CHECK_SECONDS)
    except TimeoutError:
        return False
    # The module's clock checks are coarse: a scan may also finish late without raising.
    return time.monotonic() - started <= CHECK_SECONDS
