"""Production settings pass Django's deployment check, and no key or credential reaches the logs.

PRODUCTION_ENV is the documented production environment: DEBUG off, a real
SECRET_KEY, HTTPS only (redirect, secure cookies, a year of HSTS including
subdomains and preload) behind a TLS-terminating proxy.
"""

import os
import secrets
import subprocess
import sys

import httpx
import pytest
from cryptography.fernet import Fernet

from tests import servers
from tests.conftest import ARTIFACTS
from tests.gateway_helpers import make_key, make_route

PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "LLMPROXY_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    "ALLOWED_HOSTS": "proxy.example.com",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "BEHIND_TLS_PROXY": "1",
    "CSRF_TRUSTED_ORIGINS": "https://proxy.example.com",
}


def manage(*args, env):
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=servers.ROOT,
        capture_output=True,
        text=True,
        env={**base, "DJANGO_SETTINGS_MODULE": "llmproxy.settings", **env},
        timeout=120,
    )


def test_the_deployment_check_passes_without_a_warning_on_production_settings(tmp_path):
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={**PRODUCTION_ENV, "LLMPROXY_VAR_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_the_deployment_check_fails_on_development_settings(tmp_path):
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", env={"DEBUG": "1", "LLMPROXY_VAR_DIR": str(tmp_path)}
    )
    assert result.returncode != 0
    assert "security.W018" in result.stderr  # DEBUG on


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_no_key_or_provider_credential_appears_in_the_server_log(
    django_db_blocker, mock_upstream, acme, unique_model, tmp_path
):
    credential = f"sk-upstream-{secrets.token_hex(16)}"
    provider, _ = make_route(acme, unique_model, f"{mock_upstream}/v1")
    provider.set_api_key(credential)
    provider.save()
    _, plain = make_key(acme)
    secret = plain.split("-", 2)[2]
    with django_db_blocker.unblock():
        process, base = servers.start_daphne(
            ARTIFACTS / "logs",
            name="daphne-secrets",
            LLMPROXY_VAR_DIR=tmp_path,
            LLMPROXY_TEST_UPSTREAM_KEY=credential,
        )
    try:
        body = {"model": unique_model, "messages": [{"role": "user", "content": "hi"}]}
        chat, bearer = f"{base}/v1/chat/completions", {"authorization": f"Bearer {plain}"}
        sent = [
            httpx.post(chat, headers=bearer, json=body),
            httpx.post(chat, headers={"api-key": plain}, json={**body, "stream": True}),
            httpx.post(chat, headers={"x-api-key": plain + "x"}, json=body),
            httpx.post(chat, headers=bearer, content=b"{"),
            httpx.post(chat, headers=bearer, json={**body, "model": unique_model + "-missing"}),
            httpx.get(f"{base}/api/v1/me", headers={"authorization": f"Token {plain}"}),
        ]
        assert [r.status_code for r in sent] == [200, 200, 401, 400, 404, 401]
        for response in sent:
            assert secret not in response.text and credential not in response.text
    finally:
        process.stop()
    log = process.log_path.read_text(errors="replace")
    assert "/v1/chat/completions" in log  # the log is the one of these requests
    assert secret not in log
    assert credential not in log
