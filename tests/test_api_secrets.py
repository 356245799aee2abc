import uuid
from io import StringIO

import pytest
from django.core.management import call_command

from tests.api_support import API

pytest_plugins = ["tests.api_fixtures"]


@pytest.mark.django_db
def test_a_database_dump_holds_no_plain_credential_api_key_or_api_token(platform, alice, acme, acme_user):
    provider = platform.post(
        f"{API}/providers/",
        {
            "name": "openai",
            "kind": "openai",
            "base_url": "https://api.openai.com/v1",
            "api_key": "sk-plain-provider-credential-0001",
        },
    ).json()
    alice.patch(f"{API}/providers/{provider['id']}/", {"api_key": "sk-plain-provider-credential-0002"})
    created = alice.post(f"{API}/keys/", {"name": "ci", "user": acme_user.pk}).json()
    rotated = alice.post(f"{API}/keys/{created['id']}/rotate", {"grace": "1h"}).json()
    login = {"username": "alice", "password": "pw-alice-123"}
    token = alice.post(
        f"{API}/auth/token", login, REMOTE_ADDR=f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    ).json()["token"]

    dump = StringIO()
    call_command("dumpdata", stdout=dump)
    text = dump.getvalue()

    secrets = [
        "sk-plain-provider-credential-0001",
        "sk-plain-provider-credential-0002",
        created["key"],
        rotated["key"],
        created["key"].rsplit("-", 1)[1],
        token,
        token.rsplit("-", 1)[1],
    ]
    assert '"model": "providers.provider"' in text and '"model": "keys.apikey"' in text
    assert [s for s in secrets if s in text] == []
