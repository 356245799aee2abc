"""End to end in headless Chromium: a tenant admin logs in, issues a key and copies it once."""

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from keys import secrets
from keys.models import ApiKey

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


def test_a_tenant_admin_issues_a_key_in_the_browser_and_sees_it_once(live_server, acme_admin):
    ARTIFACTS.mkdir(exist_ok=True)
    # The database is read only after the browser is closed: Playwright's sync
    # API keeps an event loop in this thread, where Django refuses ORM calls.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{live_server.url}/admin/")
            page.fill("#id_username", "alice")
            page.fill("#id_password", "pw-alice-123")
            page.click("input[type=submit]")
            expect(page.locator("#user-tools")).to_contain_text("alice")

            page.goto(f"{live_server.url}/admin/keys/apikey/add/")
            page.fill("#id_name", "browser-key")
            page.fill("#id_allowed_models", "gpt-4o")
            page.click("input[name=_save]")

            shown = page.locator("code.plain-key")
            expect(shown).to_have_count(1)
            plain = shown.inner_text().strip()
            page.screenshot(path=str(ARTIFACTS / "admin_key_issued.png"), full_page=True)

            # Back on the key's own page, the key is gone for good.
            page.click("#issued-keys a")
            expect(page.locator("#content")).to_contain_text("browser-key")
            revisited = page.content()
        finally:
            browser.close()

    assert re.fullmatch(r"lp-[A-Za-z0-9]{8}-[A-Za-z0-9]{32,}", plain)
    prefix, secret = secrets.split(plain)
    api_key = ApiKey.objects.get(prefix=prefix)
    assert secrets.digest_matches(plain, api_key.digest)
    assert (api_key.tenant_id, api_key.name, api_key.allowed_models) == (
        acme_admin.tenant_id,
        "browser-key",
        ["gpt-4o"],
    )
    assert secret not in revisited and api_key.digest not in revisited
