"""The built-in detectors, on what they must find and on look-alikes they must leave alone."""

import time

import pytest

from llmproxy.guardrails.detectors import (
    BUILT_IN,
    iban_valid,
    luhn_valid,
    redact,
    regex_detector,
    wordlist_detector,
)


def found(kind, text):
    return [text[start:end] for start, end in BUILT_IN[kind].find(text)]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("write to john.doe+tag@example.co.uk today", "john.doe+tag@example.co.uk"),
        ("Contact: ALICE_B@mail.example-corp.com.", "ALICE_B@mail.example-corp.com"),
        ("<bob.smith@sub.domain.org>", "bob.smith@sub.domain.org"),
    ],
)
def test_it_finds_email_addresses(text, expected):
    assert found("email", text) == [expected]


@pytest.mark.parametrize(
    "text",
    [
        "follow @username on the site",
        "user@localhost",
        "a@b",
        "foo@bar.c",
        "price: 5 @ $3.50",
        "email me at home",
    ],
)
def test_it_leaves_things_that_only_look_like_email_addresses(text):
    assert found("email", text) == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ("call +44 20 7946 0958 now", "+44 20 7946 0958"),
        ("US office: +1-202-555-0143.", "+1-202-555-0143"),
        ("mobile +4915123456789", "+4915123456789"),
        ("(212) 555-0143", "(212) 555-0143"),
        ("dial 212.555.0143 or", "212.555.0143"),
        ("Paris: 06 12 34 56 78", "06 12 34 56 78"),
        ("London 020 7946 0958", "020 7946 0958"),
    ],
)
def test_it_finds_phone_numbers(text, expected):
    assert found("phone", text) == [expected]


@pytest.mark.parametrize(
    "text",
    [
        "released on 2024-01-15",
        "at 10:30:45",
        "server 192.168.1.10",
        "costs $1,234,567.89",
        "version 1.2.3",
        "order 12345678",
        "card 4111 1111 1111 1111",
        "the ratio was +1.5",
        "scores 100 200 3000",
        "ISBN 978-3-16-148410-0",
    ],
)
def test_it_leaves_dates_amounts_versions_and_other_numbers_alone_as_phones(text):
    assert found("phone", text) == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ("my card is 4111 1111 1111 1111, exp 12/29", "4111 1111 1111 1111"),
        ("4111111111111111", "4111111111111111"),
        ("5555-5555-5555-4444 cvv 123", "5555-5555-5555-4444"),
        ("amex 378282246310005", "378282246310005"),
        ("amex 3782 822463 10005", "3782 822463 10005"),
        # A CVV written right after the number does not hide it.
        ("4111 1111 1111 1111 123", "4111 1111 1111 1111"),
        ("4111-1111-1111-1111 123", "4111-1111-1111-1111"),
        # Nor a phone number written right before it.
        ("call 555 123 4567 4111 1111 1111 1111", "4111 1111 1111 1111"),
    ],
)
def test_it_finds_card_numbers_that_pass_the_luhn_check(text, expected):
    assert found("card", text) == [expected]


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # Luhn fails
        "1234 5678 9012 3456",
        "12345678901234567890123",  # too long a run
        "pi is 3.1415926535897932",
        "tracking 9400 1000 0000 0000 0000 00",  # starts with 9: not a card network
        "id 411 1111 1111 1111",  # not grouped like a card
        "account 4111 1111 1111 1111 4111 1111",  # more groups: a longer number
    ],
)
def test_it_leaves_numbers_that_are_not_cards(text):
    assert found("card", text) == []


def test_luhn():
    assert luhn_valid("4111111111111111")
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert not luhn_valid("4111111111111112")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("IBAN: DE89 3704 0044 0532 0130 00", "DE89 3704 0044 0532 0130 00"),
        ("pay to GB82 WEST 1234 5698 7654 32 AND THEN", "GB82 WEST 1234 5698 7654 32"),
        ("FR1420041010050500013M02606", "FR1420041010050500013M02606"),
        ("NO9386011117947 ok", "NO9386011117947"),
    ],
)
def test_it_finds_ibans_that_pass_the_mod_97_check(text, expected):
    assert found("iban", text) == [expected]


@pytest.mark.parametrize(
    "text",
    [
        "DE89 3704 0044 0532 0130 01",  # checksum fails
        "XX89 3704 0044 0532 0130 00",  # no such country
        "DE89 3704 0044 0532 0130",  # too short for Germany
        "AB12 CDEF GHIJ KLMN",
        "HTTP2 PROTOCOL UPGRADE NEGOTIATION",
    ],
)
def test_it_leaves_things_that_only_look_like_ibans(text):
    assert found("iban", text) == []


def test_iban_checksum():
    assert iban_valid("DE89370400440532013000")
    assert iban_valid("GB82WEST12345698765432")
    assert not iban_valid("GB82WEST12345698765433")
    assert not iban_valid("GB82WEST1234569876543")  # one character short for GB


@pytest.mark.parametrize(
    "text, expected",
    [
        ("key sk-proj-abc123DEF456ghi789JKL012mno", "sk-proj-abc123DEF456ghi789JKL012mno"),
        ("sk-ant-api03-" + "Ab1_" * 20 + "AA", "sk-ant-api03-" + "Ab1_" * 20 + "AA"),
        ("aws AKIAIOSFODNN7EXAMPLE secret", "AKIAIOSFODNN7EXAMPLE"),
        ("token=ghp_" + "a1B2" * 9, "ghp_" + "a1B2" * 9),
        ("gho_" + "Z9y8" * 9, "gho_" + "Z9y8" * 9),
        (
            "github_pat_11ABCDEFG0123456789_abcdefghijKLMNOP",
            "github_pat_11ABCDEFG0123456789_abcdefghijKLMNOP",
        ),
        (
            "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",  # noqa: E501
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        ),
        ("lp-AbCd1234-" + "x" * 40, "lp-AbCd1234-" + "x" * 40),
    ],
)
def test_it_finds_api_keys_and_tokens(text, expected):
    assert found("secret", text) == [expected]


@pytest.mark.parametrize(
    "text",
    [
        "we use sk-learn-and-other-libraries",
        "the task-force met",
        "AKIA is a prefix",
        "ghp_short",
        "eyJ alone is not a token",
        "desk-0123456789012345678901",
        "github_pat_short",
    ],
)
def test_it_leaves_words_that_only_start_like_keys(text):
    assert found("secret", text) == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ("host 10.0.0.1.", "10.0.0.1"),
        ("from 192.168.1.254 to", "192.168.1.254"),
        ("v6 2001:db8::1 here", "2001:db8::1"),
        ("loopback ::1", "::1"),
        ("fe80::1ff:fe23:4567:890a", "fe80::1ff:fe23:4567:890a"),
        ("mapped ::ffff:192.168.0.1", "::ffff:192.168.0.1"),
        ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ],
)
def test_it_finds_ip_addresses(text, expected):
    assert found("ip", text) == [expected]


@pytest.mark.parametrize(
    "text",
    [
        "version 1.2.3",
        "256.1.1.1",
        "at 10:30:45",
        "std::vector<int>",
        "mac 00:1a:2b:3c:4d:5e",
        "1.2.3.4.5",
        "ratio 3:2",
        "3.14159",
    ],
)
def test_it_leaves_versions_times_and_mac_addresses_alone_as_ips(text):
    assert found("ip", text) == []


def test_a_word_list_matches_whole_words_in_any_case_longest_first():
    detector = wordlist_detector(["apollo", "Project Apollo", " "])
    text = "About PROJECT APOLLO and apollonia, and Apollo."
    assert [text[s:e] for s, e in detector.find(text)] == ["PROJECT APOLLO", "Apollo"]


def test_an_operator_regex_finds_its_matches():
    detector = regex_detector(r"EMP-\d{6}")
    text = "EMP-123456 and EMP-12345 and xEMP-654321"
    assert [text[s:e] for s, e in detector.find(text)] == ["EMP-123456", "EMP-654321"]
    assert detector.max_len == 10


def test_redact_replaces_spans_with_labels_and_merges_overlaps():
    text = "a 4111111111111111 b x@y.io c"
    spans = [(2, 18, "[REDACTED:CARD]"), (21, 27, "[REDACTED:EMAIL]"), (22, 25, "[REDACTED:REGEX]")]
    assert redact(text, spans) == "a [REDACTED:CARD] b [REDACTED:EMAIL] c"
    assert redact(text, []) is text


@pytest.mark.parametrize("filler", ["4111 ", "4 ", "DE89 ", "a@", "1.", "1:", "+1 ", "sk-", "a" * 7, "0 1"])
def test_a_text_full_of_near_misses_costs_each_detector_a_linear_scan(filler):
    # A client controls the prompt: no detector may take quadratic (or worse) time on it.
    text = filler * (100_000 // len(filler))
    started = time.monotonic()
    for detector in BUILT_IN.values():
        detector.find(text)
    assert time.monotonic() - started < 5.0
