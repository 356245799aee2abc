import time

import pytest

from audit.redaction import redact
from keys import secrets


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail jane.doe+tag@example.co.uk today", "mail [REDACTED:EMAIL] today"),
        ("from <ops@sub.acme.io>.", "from <[REDACTED:EMAIL]>."),
        ("call +44 20 7946 0958 now", "call [REDACTED:PHONE] now"),
        ("call (555) 123-4567 or 555.123.4567", "call [REDACTED:PHONE] or [REDACTED:PHONE]"),
        ("Tel.: +49 (30) 1234567", "Tel.: [REDACTED:PHONE]"),
        ("Büro 030 12345678", "Büro [REDACTED:PHONE]"),
        ("card 4111 1111 1111 1111 exp 12/29", "card [REDACTED:CARD] exp 12/29"),
        ("card 4111-1111-1111-1111", "card [REDACTED:CARD]"),
        ("amex 378282246310005", "amex [REDACTED:CARD]"),
        ("key sk-proj-abcdefghijklmnopqrstuvwxyz012345", "key [REDACTED:SECRET]"),
        ("key sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWx-123", "key [REDACTED:SECRET]"),
        ("aws AKIAIOSFODNN7EXAMPLE here", "aws [REDACTED:SECRET] here"),
        ("gh ghp_abcdefghijklmnopqrstuvwxyz0123456789", "gh [REDACTED:SECRET]"),
        ("Authorization: Bearer abc123def456ghi789jkl", "Authorization: Bearer [REDACTED:SECRET]"),
        ("password=hunter22 and more", "password=[REDACTED:SECRET] and more"),
        ('{"api_key": "s3cr3t-value"}', '{"api_key": "[REDACTED:SECRET]"}'),
        (
            "token: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0"
            ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "token: [REDACTED:SECRET]",
        ),
        ("blob 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "blob [REDACTED:SECRET]"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "[REDACTED:SECRET]"),
    ],
)
def test_it_redacts_each_kind(text, expected):
    assert redact(text) == expected


def test_it_redacts_this_proxys_own_keys():
    key = secrets.compose(secrets.new_prefix(), secrets.new_secret())

    assert redact(f"my key is {key}.") == "my key is [REDACTED:SECRET]."


@pytest.mark.parametrize(
    "text",
    [
        "The meeting is on 2024-01-15 at 10:30.",
        "Version 3.11.4, build 20240115, order #123456.",
        "Card-like but not Luhn: 4111 1111 1111 1112.",
        "An IP 192.168.100.200 and a port 8080.",
        "id 550e8400-e29b-41d4-a716-446655440000",
        "supercalifragilisticexpialidociousness is one long word",
        "Write a haiku about the sea.",
        "The token count was 1234 and the password policy is strict.",
        "",
    ],
)
def test_it_leaves_ordinary_text_alone(text):
    assert redact(text) == text


def test_it_redacts_several_things_in_one_text():
    text = "Reach me at a@b.io or +1 415 555 0100; card 5500 0000 0000 0004."

    assert redact(text) == "Reach me at [REDACTED:EMAIL] or [REDACTED:PHONE]; card [REDACTED:CARD]."


@pytest.mark.parametrize(
    "filler",
    ["a" * 1_000_000, "1" * 1_000_000, "a@" * 300_000, "+1 " * 300_000, "a1" * 500_000],
    ids=["letters", "digits", "at-signs", "plus-ones", "mixed"],
)
def test_it_stays_fast_on_a_large_adversarial_text(filler):
    started = time.monotonic()
    redact(filler)

    assert time.monotonic() - started < 3
