from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from audit.models import AuditLog
from providers import crypto
from providers.models import Provider

OLD, NEW, LOST = (Fernet.generate_key().decode() for _ in range(3))


def run(*args):
    out = StringIO()
    call_command("rotate_encryption_key", *args, stdout=out, stderr=StringIO())
    return out.getvalue().splitlines()


def provider(name, credential, *, keys):
    with override_settings(LLMPROXY_ENCRYPTION_KEYS=keys):
        p = Provider(name=name, kind="openai", base_url="https://api.example.com/v1")
        p.set_api_key(credential)
        p.save()
    return p


def credential(p, *, keys):
    p.refresh_from_db()
    with override_settings(LLMPROXY_ENCRYPTION_KEYS=keys):
        return p.get_api_key()


@pytest.fixture
def providers(db):
    return [provider("one", "sk-one", keys=[OLD]), provider("two", "sk-two", keys=[OLD])]


@pytest.mark.django_db
def test_it_re_encrypts_every_credential_under_the_first_key(providers):
    Provider.objects.create(name="env-only", kind="mock")

    with override_settings(LLMPROXY_ENCRYPTION_KEYS=[NEW, OLD]):
        lines = run()

    assert lines == [
        "2 provider credential(s) re-encrypted under the first key",
        "every stored credential now decrypts with the first key: the others can be removed",
    ]
    # The old key can go: the new one alone reads them.
    assert [credential(p, keys=[NEW]) for p in providers] == ["sk-one", "sk-two"]
    with pytest.raises(crypto.CredentialError):
        credential(providers[0], keys=[OLD])
    audit = AuditLog.objects.get(action="provider.credentials_reencrypt")
    assert audit.metadata == {"reencrypted": 2, "keys_configured": 2}


@pytest.mark.django_db
def test_during_the_rotation_both_keys_are_accepted(providers):
    fresh = provider("fresh", "sk-fresh", keys=[NEW, OLD])

    assert credential(providers[0], keys=[NEW, OLD]) == "sk-one"
    assert credential(fresh, keys=[NEW]) == "sk-fresh"


@pytest.mark.django_db
def test_a_dry_run_checks_and_writes_nothing(providers):
    before = list(Provider.objects.values_list("encrypted_api_key", flat=True))

    with override_settings(LLMPROXY_ENCRYPTION_KEYS=[NEW, OLD]):
        assert run("--dry-run") == ["2 provider credential(s) would be re-encrypted (dry run)"]

    assert list(Provider.objects.values_list("encrypted_api_key", flat=True)) == before


@pytest.mark.django_db
def test_a_credential_no_key_can_read_stops_it_before_anything_is_written(providers):
    provider("orphan", "sk-orphan", keys=[LOST])
    before = list(Provider.objects.values_list("encrypted_api_key", flat=True))

    with override_settings(LLMPROXY_ENCRYPTION_KEYS=[NEW, OLD]), pytest.raises(CommandError) as failure:
        run()

    assert "provider(s) orphan" in str(failure.value) and "nothing written" in str(failure.value)
    assert failure.value.returncode != 0
    assert list(Provider.objects.values_list("encrypted_api_key", flat=True)) == before
    assert not AuditLog.objects.filter(action="provider.credentials_reencrypt").exists()


@pytest.mark.django_db
def test_without_a_configured_key_it_refuses(providers):
    with override_settings(LLMPROXY_ENCRYPTION_KEYS=[]), pytest.raises(CommandError, match="is not set"):
        run()
