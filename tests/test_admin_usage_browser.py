"""The usage dashboard in headless Chromium, as a tenant admin and as a platform admin (screenshots kept)."""

from datetime import timedelta

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.dashboard_support import expected_by_day, seed_usage, today
from tests.test_admin_browser import ARTIFACTS, CHROMIUM_ARGS

pytestmark = pytest.mark.browser

DAY_CHARTS = ["requests-per-day", "tokens-per-day", "cost-per-day", "errors-per-day", "latency-per-day"]


def marks(page, chart, series):
    """{label: value} of one series of a chart, as the browser has it."""
    return page.eval_on_selector_all(
        f'figure[data-chart="{chart}"] [data-series="{series}"][data-value]',
        "nodes => Object.fromEntries(nodes.map(n => [n.dataset.label, n.dataset.value]))",
    )


def log_in(page, base, username, password):
    page.goto(f"{base}/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text(username)


def open_dashboard(browser, base, username, password, screenshot):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    foreign = []
    page.on("request", lambda request: None if request.url.startswith(base) else foreign.append(request.url))
    log_in(page, base, username, password)
    page.click("#usage-dashboard-link a.section")
    expect(page.locator("#usage-dashboard")).to_be_visible()
    seen = {
        "url": page.url,
        "charts": page.eval_on_selector_all("figure[data-chart]", "nodes => nodes.map(n => n.dataset.chart)"),
        "requests": marks(page, "requests-per-day", "requests"),
        "input": marks(page, "tokens-per-day", "input"),
        "errors": marks(page, "errors-per-day", "errors"),
        "tenants": marks(page, "requests-per-tenant", "requests"),
        "models": marks(page, "requests-per-model", "requests"),
        "text": page.inner_text("#content"),
        # The tallest bar of today is drawn, not just present in the markup.
        "today_bar_height": page.locator(
            f'figure[data-chart="requests-per-day"] rect[data-label="{today().isoformat()}"]'
        ).bounding_box()["height"],
    }
    page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
    seen["foreign"] = foreign
    page.close()
    return seen


def test_the_usage_dashboard_draws_the_rollups_for_a_tenant_admin_and_a_platform_admin(
    live_server, acme, globex, acme_admin, platform_admin
):
    ARTIFACTS.mkdir(exist_ok=True)
    seed_usage(acme, globex)
    start, end = today() - timedelta(days=13), today()
    acme_requests = expected_by_day([acme], start, end, "requests")
    acme_input = expected_by_day([acme], start, end, "input_tokens")
    acme_errors = expected_by_day([acme], start, end, "errors")
    all_requests = expected_by_day([acme, globex], start, end, "requests")

    # The database is read before the browser starts: Playwright's sync API keeps an event loop in
    # this thread, where Django refuses ORM calls.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            tenant_view = open_dashboard(
                browser, live_server.url, "alice", "pw-alice-123", "usage_dashboard_tenant_admin.png"
            )
            platform_view = open_dashboard(
                browser,
                live_server.url,
                "root-admin",
                "pw-root-admin-123",
                "usage_dashboard_platform_admin.png",
            )
        finally:
            browser.close()

    assert tenant_view["url"].endswith("/admin/usage/acme/")
    assert tenant_view["charts"] == [
        *DAY_CHARTS,
        "requests-per-model",
        "tokens-per-model",
        "cost-per-model",
        "errors-per-model",
        "latency-per-model",
        "requests-per-key",
        "tokens-per-key",
        "cost-per-key",
        "errors-per-key",
    ]
    assert tenant_view["requests"] == {day: str(n) for day, n in acme_requests.items()}
    assert tenant_view["input"] == {day: str(n) for day, n in acme_input.items()}
    assert tenant_view["errors"] == {day: str(n) for day, n in acme_errors.items()}
    assert tenant_view["models"] == {"gpt-4o": "58", "claude-haiku": "25"}
    assert tenant_view["tenants"] == {}
    assert "globex" not in tenant_view["text"]
    assert tenant_view["today_bar_height"] > 50

    assert platform_view["url"].endswith("/admin/usage/")
    assert "requests-per-tenant" in platform_view["charts"]
    assert platform_view["requests"] == {day: str(n) for day, n in all_requests.items()}
    assert platform_view["tenants"] == {"globex": "300", "acme": "83"}
    assert platform_view["models"]["globex-model"] == "300"

    # Everything the pages loaded came from the proxy itself: no CDN, no network.
    assert tenant_view["foreign"] == [] and platform_view["foreign"] == []
    for name in ("usage_dashboard_tenant_admin.png", "usage_dashboard_platform_admin.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000
