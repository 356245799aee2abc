import re
import subprocess
import sys

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import get_resolver
from playwright.sync_api import sync_playwright

from llmproxy.api.tokens import access_token_issue
from tests.api_support import populate

pytest_plugins = ["tests.api_fixtures"]


@pytest.mark.django_db
def test_the_schema_documents_every_api_path_and_the_token_scheme():
    schema = Client().get("/api/schema/", {"format": "json"}).json()

    routes = {
        "/api/v1/" + re.sub(r"<int:(\w+)>", "{id}", str(p.pattern))
        for p in get_resolver("llmproxy.api.urls").url_patterns
    }
    assert routes <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["tokenAuth"]["name"] == "Authorization"
    keys_list = schema["paths"]["/api/v1/keys/"]["get"]["responses"]["200"]["content"]["application/json"]
    assert keys_list["schema"]["$ref"].endswith("PaginatedKeyListOutputList")


SWAGGER_ASSET = "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"


@pytest.mark.django_db
def test_the_interactive_docs_reference_only_this_servers_assets():
    html = Client().get("/api/docs/").content.decode()

    assert f"/static/{SWAGGER_ASSET}" in html
    assert finders.find(SWAGGER_ASSET) is not None
    assert not re.search(r"""(src|href)=["']https?://""", html)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_interactive_docs_render_every_operation_without_another_host(live_server):
    elsewhere = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on(
                "request",
                lambda r: None if r.url.startswith((live_server.url, "data:")) else elsewhere.append(r.url),
            )
            page.goto(f"{live_server.url}/api/docs/")
            page.wait_for_selector(".opblock", timeout=20_000)
            operations = page.locator(".opblock").count()
        finally:
            browser.close()

    schema = Client().get("/api/schema/", {"format": "json"}).json()
    assert operations == sum(len(methods) for methods in schema["paths"].values())
    assert elsewhere == []


@pytest.mark.django_db(transaction=True)
def test_schemathesis_finds_no_server_error(live_server, platform_admin, acme, acme_user, tmp_path):
    # Objects with low ids, so generated ids sometimes name real rows.
    populate(acme, acme_user)
    _, token = access_token_issue(user=platform_admin, name="schemathesis")

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{live_server.url}/api/schema/",
            "--checks",
            "not_a_server_error",
            "--phases",
            "examples,fuzzing,stateful",
            "--max-examples",
            "10",
            "--seed",
            "20301",
            "--header",
            f"Authorization: Token {token}",
            # Revoking the run's own token would leave the rest of it unauthenticated.
            "--exclude-operation-id",
            "v1_auth_token_destroy",
            "--generation-database",
            "none",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # its cache directory stays out of the work tree
    )

    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
