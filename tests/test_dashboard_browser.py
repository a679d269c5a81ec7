"""The dashboard in a real browser (Debian's chromium driven by Playwright, headless) against a
real gunicorn: a merchant's flows without a terminal, the CSP in force, an axe-core check of
every page, and screenshots of each page at 1280 and 390 px wide.

axe-core (pinned below) is installed from the npm registry by this module into `.cache/`
(git-ignored) on first use; screenshots go to `test-artifacts/` (git-ignored), and the copies in
`docs/dashboard/` are checked in and shown in the README.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import pytest

from tests.helpers import publishable, secret
from tests.live import ROOT, http

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE_VERSION = "4.14.1"
AXE_DIR = ROOT / ".cache" / f"axe-core-{AXE_VERSION}"
AXE_JS = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
WIDTHS = {"wide": 1280, "narrow": 390}
pytestmark = [
    pytest.mark.gunicorn,
    pytest.mark.services,
    pytest.mark.skipif(not shutil.which("chromium"), reason="chromium is not installed (.ci/run installs it)"),
]


def axe_source() -> str:
    if not AXE_JS.exists():
        npm = shutil.which("npm")
        assert npm, "npm is needed to install axe-core (.ci/run installs it)"
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(AXE_DIR),
                        f"axe-core@{AXE_VERSION}"], check=True, capture_output=True, timeout=300)
    return AXE_JS.read_text()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


class Merchant:
    """One browser context on the live server, with what each page must pass."""

    def __init__(self, browser, server_url: str, width: int = 1280):
        self.url = server_url
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server_url)
        self.page = self.context.new_page()
        self.external: list[str] = []
        self.console_errors: list[str] = []
        self.page.on("request", lambda r: self.external.append(r.url) if not r.url.startswith(server_url) else None)
        self.page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        self.axe = axe_source()

    def goto(self, path: str):
        return self.page.goto(self.url + path)

    def sign_in(self, key: str) -> None:
        self.goto("/dashboard")
        self.page.get_by_label("Secret key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(self.url + "/dashboard/keys")

    def nav(self, name: str) -> None:
        self.page.get_by_role("navigation", name="Dashboard").get_by_role("link", name=name).click()
        self.page.wait_for_load_state()

    def check_accessibility(self) -> list[dict]:
        """axe-core's serious and critical violations of the current page (WCAG 2.x A/AA + best practices)."""
        # Evaluated through the DevTools protocol: not an inline script, so the page's CSP stays as it is.
        self.page.evaluate(self.axe)
        result = self.page.evaluate("""async () => {
            const r = await axe.run(document);
            return {passes: r.passes.length, version: axe.version,
                    violations: r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                                        nodes: v.nodes.map(n => n.target.join(' '))}))};
        }""")
        assert result["version"] == AXE_VERSION and result["passes"] > 10  # axe really ran its rules
        return [v for v in result["violations"] if v["impact"] in ("serious", "critical")]

    def shoot(self, name: str, width_name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}-{width_name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


def guest(server_url: str, pk: str) -> dict:
    reply = http("POST", server_url + "/api/v1/auth/guest", headers=publishable(pk))
    assert reply.status == 201, reply.body
    return reply.body


def otp_consumer(server_url: str, keys: dict, email: str) -> dict:
    assert http("POST", server_url + "/api/v1/auth/otp/request", headers=publishable(keys["publishableKey"]),
                body={"email": email}).status == 202
    outbox = http("GET", server_url + "/api/v1/test/otp-messages", headers=secret(keys["secretKey"])).body["data"]
    code = re.search(r"\b(\d{6,10})\b", next(m for m in outbox if m["to"] == email)["body"]).group(1)
    reply = http("POST", server_url + "/api/v1/auth/otp/verify", headers=publishable(keys["publishableKey"]),
                 body={"email": email, "code": code})
    assert reply.status == 200, reply.body
    return reply.body


def test_a_merchant_rotates_a_key_changes_a_setting_and_ends_a_shoppers_sessions(browser, live_server, actions):
    keys = actions.create_org("Northwind Outfitters")["keys"]["test"]
    url = live_server.url
    shopper = otp_consumer(url, keys, "ann.lee@example.com")
    bystander = guest(url, keys["publishableKey"])
    merchant = Merchant(browser, url)
    page = merchant.page
    try:
        # Signed out, every page sends the browser to the sign-in form.
        for path in ("/dashboard/keys", "/dashboard/settings", "/dashboard/consumers"):
            merchant.goto(path)
            assert page.url == url + "/dashboard/sign-in"
        merchant.sign_in(keys["secretKey"])
        cookie = next(c for c in merchant.context.cookies() if c["name"] == "usher_dashboard")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and keys["secretKey"] not in cookie["value"]

        # API keys: roll the publishable key, the old value working one more hour.
        row = page.get_by_role("row").filter(has_text="publishable")
        row.get_by_label("Old value stops").select_option("3600")
        row.get_by_role("button", name=re.compile("^Roll the publishable key")).click()
        page.wait_for_load_state()
        value = page.get_by_label("New key value").input_value()
        assert value.startswith("pk_test_") and value != keys["publishableKey"]
        assert page.get_by_text("shown this once").is_visible()
        page.get_by_role("button", name="Copy").click()
        page.get_by_text("Copied.").wait_for()
        assert page.evaluate("navigator.clipboard.readText()") == value  # the static script ran under the CSP
        assert guest(url, value)["session"]["type"] == "guest"  # the new value works
        assert guest(url, keys["publishableKey"])["session"]["type"] == "guest"  # and the old one, for an hour
        page.reload()
        assert page.get_by_label("New key value").count() == 0 and value not in page.content()
        rows = page.locator("tbody tr")
        assert rows.count() == 3  # the old publishable key (expiring), its successor, the secret key
        assert page.get_by_role("row").filter(has_text="publishable").filter(has_text="UTC").count() >= 1

        # Revoke a key: the old publishable value stops at once in the worker that revoked it, and
        # within PUBLISHABLE_KEY_CACHE_SECONDS (1 s) in the others (they may reuse its row).
        old_row = page.get_by_role("row").filter(has_text="…" + keys["publishableKey"][-4:])
        old_row.get_by_role("button", name="Revoke").click()
        page.get_by_role("heading", name="Revoke the publishable key ending in").wait_for()  # asks first
        page.get_by_role("button", name="Revoke").click()
        page.get_by_text("Revoked the publishable key").wait_for()
        time.sleep(1.1)
        for _ in range(4):  # each of the 4 workers, by the odds of gunicorn's accept
            assert http("POST", url + "/api/v1/auth/guest", headers=publishable(keys["publishableKey"])).status == 401
        assert page.locator("tbody tr").count() == 2

        # Settings: an invalid value shows the API's message inline; a valid one is saved.
        merchant.nav("Settings")
        page.get_by_label("Access token lifetime").fill("0")
        page.get_by_role("button", name="Save settings").click()
        error = page.locator("#accessTokenTtl-error")
        assert error.inner_text() == "Must be greater than or equal to 1 and less than or equal to 86400."
        assert page.get_by_label("Access token lifetime").get_attribute("aria-invalid") == "true"
        merchant.shoot("settings-error", "wide")
        page.get_by_label("Access token lifetime").fill("900")
        page.get_by_role("button", name="Save settings").click()
        page.get_by_text("Settings saved.").wait_for()
        settings = http("GET", url + "/api/v1/settings", headers=secret(keys["secretKey"])).body
        assert settings["accessTokenTtl"] == 900

        # Audit log: the change, with the signed-in key as actor, found by its type.
        merchant.nav("Audit log")
        page.get_by_label("Event type").fill("settings.updated")
        page.get_by_role("button", name="Filter").click()
        event = page.locator("tbody tr")
        assert event.count() == 1
        assert "accessTokenTtl: 3600 → 900" in event.inner_text() and "you" in event.inner_text()

        # Consumers: find the shopper by email, end all their sessions.
        merchant.nav("Consumers")
        page.get_by_label("Email, phone or consumer id").fill("Ann.Lee@Example.com")
        page.get_by_role("button", name="Search").click()
        page.get_by_role("link", name=shopper["session"]["consumerId"]).click()
        assert page.locator("tbody tr").filter(has_text="live").count() == 1
        page.get_by_role("button", name="End all sessions").click()
        page.get_by_role("heading", name="End all sessions of this consumer?").wait_for()  # asks first
        page.get_by_role("button", name="End all sessions").click()
        page.get_by_text("Ended 1 session.").wait_for()
        assert page.locator("tbody tr").filter(has_text="ended").count() == 1
        refused = http("POST", url + "/api/v1/auth/refresh", headers=publishable(value),
                       body={"refreshToken": shopper["refreshToken"]})
        assert refused.status == 401 and refused.body["error"] == "refresh_token_invalid", refused.body
        still = http("POST", url + "/api/v1/auth/refresh", headers=publishable(value),
                     body={"refreshToken": bystander["refreshToken"]})
        assert still.status == 200  # another consumer's session is untouched

        # Sign out: every page goes back to the sign-in form.
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(url + "/dashboard/sign-in")
        for path in ("/dashboard/keys", "/dashboard/settings", "/dashboard/consumers", "/dashboard/outbox"):
            merchant.goto(path)
            assert page.url == url + "/dashboard/sign-in"
        assert merchant.external == []
        assert not [e for e in merchant.console_errors if "Content Security Policy" in e], merchant.console_errors
    finally:
        merchant.close()


def test_a_restricted_key_sees_only_what_its_scopes_allow(browser, live_server, actions):
    keys = actions.create_org("Scoped")["keys"]["test"]
    reader = http("POST", live_server.url + "/api/v1/keys", headers=secret(keys["secretKey"]),
                  body={"type": "restricted", "scopes": ["experiences:read"]}).body
    merchant = Merchant(browser, live_server.url)
    page = merchant.page
    try:
        merchant.goto("/dashboard")
        page.get_by_label("Secret key").fill(reader["key"])
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text("This key's scopes reach no dashboard page").wait_for()
        assert page.get_by_role("link", name="Settings").count() == 0
        assert page.get_by_role("link", name="API keys").count() == 0
        response = merchant.goto("/dashboard/settings")
        assert response.status == 403
        assert page.get_by_role("heading", level=1).inner_text() == "403 insufficient_scope"
        assert "Needed: settings:write." in page.content()
    finally:
        merchant.close()


def test_the_page_refuses_framing_inline_scripts_and_forged_posts(browser, live_server, actions):
    """The CSP in force in the browser: a page cannot be framed and an injected inline script
    does not run; a POST without the CSRF token is refused."""
    keys = actions.create_org("Framed")["keys"]["test"]
    merchant = Merchant(browser, live_server.url)
    try:
        merchant.sign_in(keys["secretKey"])
        page = merchant.page
        # A page frames the dashboard and, as a control, a page without the dashboard's headers:
        # the control loads, the dashboard is refused. `frame-ancestors 'none'` refuses every
        # parent, even one of the same origin, which is what the framing page is here (Chromium
        # itself refuses a cross-site page framing loopback addresses, which would hide the test).
        attacker = (f'<iframe id="f" src="{live_server.url}/dashboard/keys"></iframe>'
                    f'<iframe id="control" src="{live_server.url}/openapi.json"></iframe>')
        framing_page = live_server.url + "/framing-test"
        page.route(framing_page, lambda route: route.fulfill(body=attacker, content_type="text/html"))
        page.goto(framing_page, wait_until="load")
        urls = {frame.frame_element().get_attribute("id"): frame.url for frame in page.frames[1:]}
        assert live_server.url + "/openapi.json" in urls.values(), urls
        assert live_server.url + "/dashboard/keys" not in urls.values(), urls
        assert page.frame_locator("#f").get_by_role("heading", name="API keys").count() == 0
        merchant.goto("/dashboard/keys")
        ran = page.evaluate("""() => { const s = document.createElement('script');
            s.textContent = 'window.__inline = 1'; document.body.appendChild(s); return window.__inline === 1; }""")
        assert ran is False
        # A form posted without its CSRF token (the cookie goes along, as in a forged request): 400.
        status = page.evaluate("""async () => (await fetch('/dashboard/keys', {method: 'POST',
            body: new URLSearchParams({type: 'secret'})})).status""")
        assert status == 400
        assert page.locator("tbody tr").count() == 2 and merchant.goto("/dashboard/keys").status == 200
        assert page.locator("tbody tr").count() == 2  # no key was created
    finally:
        merchant.close()


PAGES = [("sign-in", "/dashboard/sign-in"), ("api-keys", "/dashboard/keys"), ("settings", "/dashboard/settings"),
         ("consumers", "/dashboard/consumers"), ("consumer", None), ("audit-log", "/dashboard/audit"),
         ("webhooks", None), ("webhook-deliveries", None), ("test-outbox", "/dashboard/outbox")]


def add_endpoint(merchant: Merchant, url: str, events: list[str], description: str) -> str:
    """Add a webhook endpoint with the form, as a merchant does; returns the secret shown once."""
    page = merchant.page
    merchant.nav("Webhooks")
    page.get_by_label("URL", exact=True).fill(url)
    for event_type in events:
        page.get_by_label(event_type, exact=True).check()
    page.get_by_label("Description").fill(description)
    page.get_by_role("button", name="Add endpoint").click()
    value = page.get_by_role("textbox", name="New signing secret")
    value.wait_for()
    return value.input_value()


@pytest.mark.parametrize("width_name", list(WIDTHS))
def test_every_page_passes_axe_and_is_photographed(browser, live_server, actions, width_name):
    org = actions.create_org("Northwind Outfitters")
    keys = org["keys"]["test"]
    shopper = otp_consumer(live_server.url, keys, "ann.lee@example.com")
    guest(live_server.url, keys["publishableKey"])
    merchant = Merchant(browser, live_server.url, WIDTHS[width_name])
    page = merchant.page
    violations: dict = {}
    try:
        for name, path in PAGES:
            if name == "api-keys":
                merchant.sign_in(keys["secretKey"])
                # Show the one-time panel as a merchant sees it after creating a key.
                page.get_by_label("Type", exact=True).select_option("secret")
                page.get_by_role("button", name="Create key").click()
                page.get_by_label("New key value").wait_for()
            elif name == "webhooks":
                # An endpoint that listens to every session, its secret shown once.
                secret_value = add_endpoint(merchant, "http://127.0.0.1:9/usher/webhooks",
                                            ["session.created", "session.revoked"], "Order service")
                assert secret_value.startswith("whsec_")
                page.get_by_role("button", name="Copy").click()
                page.get_by_text("Copied.").wait_for()
                assert page.evaluate("navigator.clipboard.readText()") == secret_value
            elif name == "webhook-deliveries":
                guest(live_server.url, keys["publishableKey"])  # a session.created delivery
                merchant.goto("/dashboard/webhooks")
                page.get_by_role("link", name="Deliveries to http://127.0.0.1:9/usher/webhooks").click()
                page.get_by_role("heading", name="Deliveries, newest first").wait_for()
                assert page.locator("tbody tr").filter(has_text="session.created").count() >= 1
            elif path is not None:
                merchant.goto(path)
            else:
                merchant.goto(f"/dashboard/consumers/{shopper['session']['consumerId']}")
                # End the session from its row, as a merchant would (the audit log then shows it).
                page.get_by_role("button", name=re.compile("^End session")).first.click()
                page.get_by_text("Ended the session.").wait_for()
            assert page.locator("h1").count() == 1
            found = merchant.check_accessibility()
            if found:
                violations[name] = found
            merchant.shoot(name, width_name)
            if width_name == "narrow":  # nothing wider than the phone's screen
                assert page.evaluate("document.documentElement.scrollWidth") <= WIDTHS["narrow"], name
    finally:
        merchant.close()
    assert violations == {}, json.dumps(violations, indent=1)
    for name, _ in PAGES:
        assert (ARTIFACTS / f"{name}-{width_name}.png").stat().st_size > 5_000
