"""Swagger UI in a real browser: Debian's chromium driven by Playwright, headless."""

from __future__ import annotations

import shutil

import pytest

from tests.live import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.gunicorn,
    pytest.mark.services,
    pytest.mark.skipif(not shutil.which("chromium"), reason="chromium is not installed (.ci/run installs it)"),
]
# A test artifact (git-ignored); docs/swagger-ui-guest.png is a checked-in copy of one.
SCREENSHOT = ROOT / "test-artifacts" / "swagger-ui-guest.png"


def test_swagger_ui_authorizes_and_executes_a_guest_session(live_server, actions):
    from playwright.sync_api import sync_playwright

    keys = actions.create_org("Browser")["keys"]["test"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 1800})
        external = []
        page.on("request", lambda request: external.append(request.url)
                if not request.url.startswith(live_server.url) else None)
        page.goto(live_server.url + "/docs")
        page.locator(".swagger-ui .info .title").wait_for(timeout=20000)
        assert "Usher" in page.locator(".swagger-ui .info .title").inner_text()

        page.locator("button.authorize").first.click()
        scheme = page.locator(".auth-container").filter(has_text="X-Publishable-Key")
        scheme.locator("input").fill(keys["publishableKey"])
        scheme.locator("button.authorize").click()
        page.locator(".auth-btn-wrapper button.btn-done").first.click()

        operation = page.locator("#operations-auth-createGuestSession")
        operation.locator(".opblock-summary").click()
        # tryItOutEnabled is on: operations open ready to execute, without a "Try it out" step.
        operation.locator("button.execute").click()
        status = operation.locator(".live-responses-table .response .response-col_status").first
        status.wait_for(timeout=20000)
        assert status.inner_text().strip().startswith("201")
        body = operation.locator(".live-responses-table .response-col_description pre").first.inner_text()
        assert '"accessToken": "eyJ' in body and '"type": "guest"' in body
        operation.scroll_into_view_if_needed()
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=False)
        browser.close()
    assert external == []  # every asset came from the app itself
    assert SCREENSHOT.stat().st_size > 10_000
