"""Operator regexes: a catastrophic one is refused when saved, and cut off if it runs anyway."""

import time

import pytest
from django.core.exceptions import ValidationError

from llmproxy.guardrails.detectors import regex_detector
from llmproxy.guardrails.engine import RequestGuard, Rule, Selection
from llmproxy.guardrails.hits import REGEX_TIMEOUTS
from llmproxy.guardrails.regex_timeout import RegexTimeout, UnsafePattern, check_pattern
from tenants.models import Guardrail

CATASTROPHIC = [
    r"(a+)+$",
    r"(a|aa)+$",
    r"(\w+\s?)+$",
    r"(x+x+)+y",
    r"([a-z]+)*\d",
    r"(\d+\.?)+$",
    r"^(([a-z])+.)+[A-Z]([a-z])+$",
    r"(?:\s*,\s*)+$",
]

USEFUL = [
    r"EMP-\d{6}",
    r"(?i)\bproject[- ]?(?:apollo|zeus)\b",
    r"[A-Z]{3}-\d{4}-[A-Z]{2}",
    r"\b\d{3}-\d{2}-\d{4}\b",
    r"^.*confidential.*$",
    r"\w+@\w+",
    r"(?:foo|bar)+baz",
]


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_a_catastrophic_pattern_is_refused(pattern):
    started = time.monotonic()
    with pytest.raises(UnsafePattern, match="backtracks catastrophically"):
        check_pattern(pattern)
    # Refusing costs the operator a moment, not the proxy anything.
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("pattern", USEFUL)
def test_an_ordinary_pattern_is_accepted(pattern):
    assert check_pattern(pattern).pattern == pattern


@pytest.mark.parametrize(
    "pattern, reason",
    [
        ("", "required"),
        ("(unclosed", "invalid regular expression"),
        ("a*", "matches the empty string"),
        ("x?|y?", "matches the empty string"),
        ("a" * 1001, "longer than 1000"),
    ],
)
def test_a_pattern_that_is_invalid_empty_matching_or_too_long_is_refused(pattern, reason):
    with pytest.raises(UnsafePattern, match=reason):
        check_pattern(pattern)


@pytest.mark.django_db
def test_saving_a_guardrail_with_a_catastrophic_pattern_fails_validation(acme):
    guardrail = Guardrail(tenant=acme, name="bad", detector="regex", pattern=r"(a+)+$", action="block")
    with pytest.raises(ValidationError) as refused:
        guardrail.full_clean()
    assert "pattern" in refused.value.message_dict
    guardrail.pattern = r"EMP-\d{6}"
    guardrail.full_clean()


def test_a_catastrophic_pattern_that_got_in_anyway_is_cut_off_at_run_time():
    detector = regex_detector(r"(a|aa)+$")  # compiled as stored, without the save-time check
    started = time.monotonic()
    with pytest.raises(RegexTimeout):
        detector.find("a" * 60 + "!")
    assert time.monotonic() - started < 1.0


def test_a_request_is_not_stalled_by_a_pattern_that_runs_out_of_time():
    rule = Rule(id=99, name="slow", detector=regex_detector(r"(a|aa)+$"), action="block", tenant="acme")
    guard = RequestGuard(Selection([rule]), tenant_id=1, tenant_slug="acme")
    payload = {"model": "m", "messages": [{"role": "user", "content": "a" * 60 + "!"}]}
    before = REGEX_TIMEOUTS.labels("acme", "slow")._value.get()

    started = time.monotonic()
    assert guard.check_request("chat", payload) is payload  # the rule is skipped, the request goes on
    assert time.monotonic() - started < 1.0
    assert REGEX_TIMEOUTS.labels("acme", "slow")._value.get() == before + 1
    assert guard.hits == []


def test_a_pattern_runs_within_a_bound_that_grows_with_the_text():
    detector = regex_detector(r"EMP-\d{6}")
    text = ("filler text " * 20_000) + "EMP-123456"
    assert [text[s:e] for s, e in detector.find(text)] == ["EMP-123456"]
