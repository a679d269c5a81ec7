"""Real browsers: Debian's chromium driven by Playwright, headless: Swagger UI, and a shop page on
another origin calling the consumer API (CORS)."""

from __future__ import annotations

import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from app.models import Consumer
from tests.helpers import secret
from tests.live import ROOT, free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.gunicorn,
    pytest.mark.services,
    pytest.mark.skipif(not shutil.which("chromium"), reason="chromium is not installed (.ci/run installs it)"),
]
# A test artifact (git-ignored); docs/swagger-ui-guest.png is a checked-in copy of one.
SCREENSHOT = ROOT / "test-artifacts" / "swagger-ui-guest.png"


BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_swagger_ui_authorizes_and_executes_a_guest_session(live_server, actions):
    from playwright.sync_api import sync_playwright

    keys = actions.create_org("Browser")["keys"]["test"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1800})
        external = []
        page.on("request", lambda request: external.append(request.url)
                if not request.url.startswith(live_server.url) else None)
        page.goto(live_server.url + "/docs")
        page.locator(".swagger-ui .info .title").wait_for(timeout=20000)
        assert "Usher" in page.locator(".swagger-ui .info .title").inner_text()
        # The first screen (a 1280 x 720 laptop) shows "Authorize"; sections are who calls.
        page.set_viewport_size({"width": 1280, "height": 720})
        box = page.locator("button.authorize").first.bounding_box()
        assert box is not None and box["y"] + box["height"] <= 720, box
        sections = [text.strip() for text in page.locator(".opblock-tag-section h3 .nostyle span").all_inner_texts()]
        assert sections == ["Shop", "Merchant server", "Admin", "OAuth and discovery", "Health"], sections
        page.set_viewport_size({"width": 1280, "height": 1800})
        # The test's ISSUER (http://usher.test) is not this gunicorn: use the document's own host.
        page.locator(".servers select").select_option("/")

        page.locator("button.authorize").first.click()
        scheme = page.locator(".auth-container").filter(has_text="X-Publishable-Key")
        scheme.locator("input").fill(keys["publishableKey"])
        scheme.locator("button.authorize").click()
        page.locator(".auth-btn-wrapper button.btn-done").first.click()

        operation = page.locator("#operations-Shop-createGuestSession")
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


SHOP_PAGE = b"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head>
<body><h1>Shop</h1><script>
async function joinQueue(api, pk, queueId) {
  try {
    const guest = await fetch(api + "/api/v1/auth/guest", {method: "POST", headers: {"X-Publishable-Key": pk}});
    const session = await guest.json();
    const enter = await fetch(api + "/api/v1/queues/" + queueId + "/enter", {method: "POST",
      headers: {"X-Publishable-Key": pk, "Authorization": "Bearer " + session.accessToken}});
    const state = await enter.json();
    return {guest: guest.status, guestRequestId: guest.headers.get("X-Request-Id"), enter: enter.status,
            enterRequestId: enter.headers.get("X-Request-Id"), position: state.position,
            consumerId: state.consumerId};
  } catch (error) {
    return {blocked: String(error)};
  }
}
</script></body></html>"""


class _ShopPage(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(SHOP_PAGE)))
        self.end_headers()
        self.wfile.write(SHOP_PAGE)

    def log_message(self, *_args):
        pass


def test_a_shop_page_on_another_origin_signs_in_and_enters_a_queue(live_server, actions, client, app):
    """Blocked while the shop's origin is not in the live allowedOrigins (and nothing happens),
    then signs a shopper in and enters a queue, reading X-Request-Id, once it is."""
    from playwright.sync_api import sync_playwright

    org = actions.create_org("Shop")
    keys = org["keys"]["live"]
    experience = client.post("/api/v1/experiences", json={"name": "Drop"}, headers=secret(keys["secretKey"])).json
    queue = client.post("/api/v1/queues", json={"experienceId": experience["id"], "name": "Main"},
                        headers=secret(keys["secretKey"])).json
    shop = ThreadingHTTPServer(("127.0.0.1", free_port()), _ShopPage)
    threading.Thread(target=shop.serve_forever, daemon=True).start()
    shop_origin = f"http://127.0.0.1:{shop.server_address[1]}"

    def live_consumers() -> int:
        with app.extensions["usher"].db.sessionmaker() as session:
            return session.scalar(select(func.count()).select_from(Consumer).where(
                Consumer.organization_id == org["organizationId"], Consumer.mode == "live"))

    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
            page = browser.new_page()
            page.goto(shop_origin + "/shop.html")
            args = [live_server.url, keys["publishableKey"], queue["id"]]
            blocked = page.evaluate("(a) => joinQueue(...a)", args)
            assert "blocked" in blocked and "Failed to fetch" in blocked["blocked"], blocked
            assert live_consumers() == 0  # refused before anything happened

            patched = client.patch("/api/v1/settings", json={"allowedOrigins": [shop_origin]},
                                   headers=secret(keys["secretKey"]))
            assert patched.status_code == 200
            # Another process changed the settings: gunicorn's workers may reuse the key's row, and
            # with it the old allowedOrigins, for PUBLISHABLE_KEY_CACHE_SECONDS (1 s) at most.
            time.sleep(1.1)
            joined = page.evaluate("(a) => joinQueue(...a)", args)
            browser.close()
    finally:
        shop.shutdown()
        shop.server_close()
    assert joined["guest"] == 201 and joined["enter"] == 200, joined
    assert joined["position"] == 1 and joined["consumerId"].startswith("guest_")
    assert len(joined["guestRequestId"]) >= 16 and len(joined["enterRequestId"]) >= 16
    assert live_consumers() == 1
