"""@usher/js in a real browser (Debian's chromium, headless, driven by Playwright) against a real
gunicorn, the shop page (examples/shop/) served from another origin with a strict CSP:

    Content-Security-Policy: default-src 'none'; script-src 'self' <usher>; connect-src <usher>

The shop's origin is the only entry of the mode's `allowedOrigins`. One browser for the module;
each test opens the contexts (one per "device": its tabs share localStorage) and pages it needs.
"""

from __future__ import annotations

import datetime
import shutil
import subprocess
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

import pytest

from tests.helpers import secret
from tests.live import ROOT, LoopbackHTTPServer, http
from tests.test_sdk_js import REACT, build_packages

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOP = ROOT / "examples" / "shop"
pytestmark = [
    pytest.mark.gunicorn,
    pytest.mark.services,
    pytest.mark.skipif(not shutil.which("chromium"), reason="chromium is not installed (.ci/run installs it)"),
]
# Collected in every page before its own scripts run (an init script is not subject to the CSP).
COLLECT_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation",
    (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""
REACT_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>React hooks</title>
<meta name="usher-base-url" content="{base}"><meta name="usher-publishable-key" content="{pk}">
<meta name="usher-queue" content="{queue}">
<script type="module" src="react.js"></script></head><body><div id="root"></div></body></html>"""

GLOBAL_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Classic script</title>
<script src="{base}/sdk/v1/usher.global.js"></script></head><body></body></html>"""


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


@pytest.fixture(scope="module")
def react_bundle(tmp_path_factory) -> bytes:
    """The hooks' test page, bundled with React (production build) by esbuild."""
    build_packages()
    out = tmp_path_factory.mktemp("react") / "react.js"
    subprocess.run([str(REACT / "node_modules" / ".bin" / "esbuild"), "test/page.mjs", "--bundle", "--format=esm",
                    "--minify", "--define:process.env.NODE_ENV=\"production\"", f"--outfile={out}"],
                   cwd=REACT, check=True, capture_output=True, timeout=120)
    return out.read_bytes()


class Shop:
    """The shop's origin: examples/shop/ with this test's Usher, key and queue in its meta tags."""

    def __init__(self, usher_url: str, keys: dict, queue_id: str, react_js: bytes, csp_extra: str = ""):
        self.usher_url, self.keys, self.queue_id = usher_url, keys, queue_id
        csp = f"default-src 'none'; script-src 'self' {usher_url}; connect-src {usher_url}{csp_extra}"
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path = urlsplit(self.path).path
                if path == "/":
                    body, kind = shop.page(), "text/html"
                elif path == "/shop.js":
                    body, kind = (SHOP / "shop.js").read_bytes(), "text/javascript"
                elif path == "/react.html":
                    body, kind = REACT_PAGE.format(base=usher_url, pk=keys["publishableKey"],
                                                   queue=queue_id).encode(), "text/html"
                elif path == "/global.html":
                    body, kind = GLOBAL_PAGE.format(base=usher_url).encode(), "text/html"
                elif path == "/react.js":
                    body, kind = react_js, "text/javascript"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Security-Policy", csp)
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args):
                pass

        self.server = LoopbackHTTPServer(Handler)
        self.csp = csp

    @property
    def url(self) -> str:
        return f"http://localhost:{self.server.port}"  # another origin than Usher's http://127.0.0.1:…

    def page(self) -> bytes:
        html = (SHOP / "index.html").read_text()
        for name, value in (("base-url", self.usher_url), ("publishable-key", self.keys["publishableKey"]),
                            ("queue", self.queue_id), ("poll-interval", "1")):
            start = html.index(f'<meta name="usher-{name}" content="') + len(f'<meta name="usher-{name}" content="')
            html = html[:start] + value + html[html.index('"', start):]
        return html.encode()


@pytest.fixture(scope="module")
def shop(live_server, actions_factory, react_bundle):
    org = actions_factory("Northwind")
    keys = org["keys"]["test"]
    experience = http("POST", live_server.url + "/api/v1/experiences", headers=secret(keys["secretKey"]),
                      body={"name": "Drop"}).body
    queue = http("POST", live_server.url + "/api/v1/queues", headers=secret(keys["secretKey"]),
                 body={"experienceId": experience["id"], "name": "Main"}).body
    shop = Shop(live_server.url, keys, queue["id"], react_bundle)
    with shop.server:
        reply = http("PATCH", live_server.url + "/api/v1/settings", headers=secret(keys["secretKey"]),
                     body={"allowedOrigins": [shop.url], "accessTokenTtl": 900})
        assert reply.status == 200 and reply.body["allowedOrigins"] == [shop.url]
        yield shop


class Device:
    """A browser context (its tabs share storage) with what every page must pass: no CSP violation,
    no request to anything but the shop and Usher, no page error."""

    def __init__(self, browser, shop: Shop):
        self.shop = shop
        self.context = browser.new_context()
        self.context.add_init_script(COLLECT_VIOLATIONS)
        self.requests: list = []
        self.responses: list = []
        self.errors: list[str] = []
        self.pages: list = []
        self.context.on("request", lambda request: self.requests.append(request))
        self.context.on("response", lambda response: self.responses.append(response))

    def tab(self, path: str = "/", clock: datetime.datetime | None = None):
        page = self.context.new_page()
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        if clock is not None:
            page.clock.install(time=clock)
        page.goto(self.shop.url + path)
        if path == "/":
            page.wait_for_selector("body[data-ready=true]")
        self.pages.append(page)
        return page

    def api(self, path: str, method: str | None = None) -> list:
        return [r for r in self.requests if urlsplit(r.url).path == "/api/v1" + path
                and (method is None or r.method == method)]

    def check(self) -> None:
        for page in self.pages:
            if not page.is_closed():
                assert page.evaluate("window.__violations") == []
        origins = {f"{urlsplit(r.url).scheme}://{urlsplit(r.url).netloc}" for r in self.requests}
        assert origins <= {self.shop.url, self.shop.usher_url}, origins
        # The only 401s allowed are a refused refresh of a session that was ended (and its retry).
        assert self.errors == [] or all("401" in e or "Failed to load resource" in e for e in self.errors), self.errors

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def device(browser, shop):
    devices: list[Device] = []

    def make() -> Device:
        devices.append(Device(browser, shop))
        return devices[-1]

    yield make
    for made in devices:
        made.check()
        made.close()


def session_text(page) -> str:
    return page.locator("#session").inner_text()


def wait_text(page, selector: str, text: str, timeout: float = 15) -> None:
    page.locator(selector).filter(has_text=text).wait_for(timeout=timeout * 1000)


def until(page, expression: str, timeout: float = 15):
    """Poll an expression through evaluate (page.wait_for_function would eval in the page, which
    the strict CSP refuses)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = page.evaluate(expression)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{expression} stayed false")


def outbox_code(shop: Shop, email: str) -> str:
    messages = http("GET", shop.usher_url + "/api/v1/test/otp-messages",
                    headers=secret(shop.keys["secretKey"])).body["data"]
    return next(m["code"] for m in messages if m["to"] == email)


def live_sessions(shop: Shop, consumer_id: str) -> list[dict]:
    reply = http("GET", f"{shop.usher_url}/api/v1/consumers/{consumer_id}/sessions",
                 headers=secret(shop.keys["secretKey"]))
    return [s for s in reply.body["data"] if s["revokedAt"] is None]


def test_guest_queue_watch_otp_upgrade_refresh_and_sign_out_across_reloads_and_tabs(device, shop):
    """Acceptance 1: the whole path on the shop page, no hand-written request."""
    phone = device()
    tab = phone.tab()
    assert session_text(tab) == "signed out"
    tab.click("#guest")
    wait_text(tab, "#session", "guest ")
    guest = tab.evaluate("usher.session")
    tab.click("#enter")
    wait_text(tab, "#queue", "QUEUED, position")
    wait_text(tab, "#events", "SIGNED_IN")

    tab.reload()  # reload restore: the same session, no new sign-in
    tab.wait_for_selector("body[data-ready=true]")
    assert tab.evaluate("usher.session") == guest
    assert tab.locator("#events li").all_inner_texts() == ["INITIAL_SESSION"]
    wait_text(tab, "#queue", "QUEUED, position")  # the watch polls again after the reload
    assert len(phone.api("/auth/guest")) == 1

    second = phone.tab()  # another tab of the same shop: already signed in
    assert second.evaluate("usher.session") == guest

    tab.fill("#email", "ann.lee@example.com")
    tab.click("#request-code button")
    wait_text(tab, "#message", "Check your email")
    tab.fill("#code", outbox_code(shop, "ann.lee@example.com"))
    tab.click("#verify-code button")
    wait_text(tab, "#session", f"upgraded from {guest['consumerId']}")
    session = tab.evaluate("usher.session")
    assert session["type"] == "otp" and session["guestId"] == guest["consumerId"]
    verify = phone.api("/auth/otp/verify")[0]
    assert verify.headers["authorization"].startswith("Bearer ")  # the guest's token: the upgrade
    state = tab.evaluate(f"usher.queues.status({shop.queue_id!r})")
    assert state["consumerId"] == session["consumerId"] and state["status"] == "QUEUED"  # the place came along
    wait_text(second, "#session", f"upgraded from {guest['consumerId']}")  # the other tab followed

    before = tab.evaluate("usher.getAccessToken()")
    refreshed = tab.evaluate("usher.refresh()")
    assert refreshed["sessionId"] == session["sessionId"] and tab.evaluate("usher.getAccessToken()") != before
    wait_text(second, "#events", "TOKEN_REFRESHED")
    assert second.evaluate("usher.getAccessToken()") == tab.evaluate("usher.getAccessToken()")

    tab.reload()
    tab.wait_for_selector("body[data-ready=true]")
    assert tab.evaluate("usher.session.sessionId") == session["sessionId"]
    tab.click("#sign-out")
    wait_text(tab, "#session", "signed out")
    wait_text(second, "#session", "signed out")  # sign-out reaches the other tab
    assert second.locator("#events li").last.inner_text() == "SIGNED_OUT"
    tab.reload()
    tab.wait_for_selector("body[data-ready=true]")
    assert session_text(tab) == "signed out"
    assert live_sessions(shop, session["consumerId"]) == []


def test_ten_tabs_refreshing_at_the_same_moment_end_with_one_session_all_signed_in(device, shop):
    laptop = device()
    first = laptop.tab()
    first.click("#guest")
    wait_text(first, "#session", "guest ")
    session = first.evaluate("usher.session")
    tabs = [first] + [laptop.tab() for _ in range(9)]
    for tab in tabs:  # every tab waits for one signal, then refreshes
        tab.evaluate("""() => { window.__refreshed = null;
            new BroadcastChannel("go").onmessage = () => usher.refresh().then(
                (s) => (window.__refreshed = s.sessionId), (e) => (window.__refreshed = "error " + e.error)); }""")
    tabs[0].evaluate("new BroadcastChannel('go').postMessage(1)")  # reaches every tab's listener, its own too
    for tab in tabs:
        until(tab, "window.__refreshed !== null")
    results = {tab.evaluate("window.__refreshed") for tab in tabs}
    assert results == {session["sessionId"]}
    tokens = {tab.evaluate("usher.getAccessToken()") for tab in tabs}
    assert len(tokens) == 1 and None not in tokens
    assert all(tab.evaluate("usher.session.sessionId") == session["sessionId"] for tab in tabs)
    refreshes = laptop.api("/auth/refresh")
    assert 1 <= len(refreshes) <= 10
    assert all(r.response().status == 200 for r in refreshes)  # no reuse: the grace window answered them all
    assert [s["id"] for s in live_sessions(shop, session["consumerId"])] == [session["sessionId"]]
    assert tabs[3].evaluate(f"usher.queues.enter({shop.queue_id!r}).then((s) => s.status)") == "QUEUED"


def test_a_tab_refreshing_after_another_tab_and_after_the_grace_window_stays_signed_in(device, shop):
    tablet = device()
    a = tablet.tab()
    a.click("#guest")
    wait_text(a, "#session", "guest ")
    session = a.evaluate("usher.session")
    b = tablet.tab()
    key = f"usher.session.{shop.keys['publishableKey']}"
    stale = b.evaluate(f"JSON.parse(localStorage.getItem({key!r})).refreshToken")
    # b hears nothing of a's refresh (no storage event, no channel message): only storage tells.
    b.evaluate("addEventListener('storage', (e) => e.stopImmediatePropagation(), true)")
    a.evaluate("BroadcastChannel.prototype.postMessage = () => {}")
    a.evaluate("usher.refresh()")
    time.sleep(3.5)  # past the live server's REFRESH_GRACE_SECONDS (3): the stale token would now be a reuse
    b.evaluate("usher.refresh()")
    assert b.evaluate("usher.session.sessionId") == session["sessionId"]
    assert b.evaluate("usher.getAccessToken()") == a.evaluate("usher.getAccessToken()")
    assert b.evaluate(f"usher.queues.enter({shop.queue_id!r}).then((s) => s.status)") == "QUEUED"
    sent = [r.post_data_json["refreshToken"] for r in tablet.api("/auth/refresh")]
    assert sent[0] == stale and stale not in sent[1:]  # a used it once; b never did
    assert all(r.response().status == 200 for r in tablet.api("/auth/refresh"))  # no refresh_token_reused
    assert [s["id"] for s in live_sessions(shop, session["consumerId"])] == [session["sessionId"]]


def test_a_session_ended_by_the_merchant_signs_the_page_out_on_every_tab(device, shop):
    desktop = device()
    a = desktop.tab()
    a.click("#guest")
    wait_text(a, "#session", "guest ")
    a.click("#enter")
    wait_text(a, "#queue", "QUEUED")
    b = desktop.tab()
    session_id = a.evaluate("usher.session.sessionId")
    assert http("DELETE", f"{shop.usher_url}/api/v1/sessions/{session_id}",
                headers=secret(shop.keys["secretKey"])).status == 204
    wait_text(a, "#session", "signed out")  # the watch's next poll: 401, refresh refused, SIGNED_OUT
    wait_text(b, "#session", "signed out")
    assert a.locator("#events li").last.inner_text() == "SIGNED_OUT"
    assert desktop.api("/auth/refresh")[-1].response().status == 401
    polls = len(desktop.api(f"/queues/{shop.queue_id}/status"))
    time.sleep(2.5)  # the watch stopped with the session (it polled every second)
    assert len(desktop.api(f"/queues/{shop.queue_id}/status")) == polls


@pytest.mark.parametrize("hours", [3, -3])
def test_a_device_clock_3h_off_neither_loops_nor_sends_an_old_token(device, shop, hours):
    skewed = device()
    now = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=hours)
    tab = skewed.tab(clock=now)
    tab.click("#guest")
    wait_text(tab, "#session", "guest ")
    tab.click("#enter")
    wait_text(tab, "#queue", "QUEUED")
    tab.clock.run_for(10 * 60 * 1000)  # 10 min of the page's time: the token (900 s) is not due yet
    tab.evaluate(f"usher.queues.status({shop.queue_id!r})")
    assert skewed.api("/auth/refresh") == []  # no refresh loop although exp is 3 h off the device clock
    tab.clock.run_for(5 * 60 * 1000)  # past 900 - 60 s after receipt: one refresh
    deadline = time.monotonic() + 10
    while not skewed.api("/auth/refresh") and time.monotonic() < deadline:
        tab.wait_for_timeout(50)
    tab.evaluate(f"usher.queues.status({shop.queue_id!r})")
    assert len(skewed.api("/auth/refresh")) == 1
    assert tab.evaluate("usher.session") is not None
    answers = [r.response().status for r in skewed.requests if "/api/v1/" in r.url and r.response()]
    assert 401 not in answers and 200 in answers, answers  # never an expired token sent


def test_the_shop_works_under_a_strict_csp_without_a_violation(device, shop):
    strict = device()
    tab = strict.tab()
    document = strict.requests[0].response()
    assert document.headers["content-security-policy"] == shop.csp
    tab.click("#guest")
    wait_text(tab, "#session", "guest ")
    tab.click("#enter")
    wait_text(tab, "#queue", "QUEUED")
    tab.click("#leave")
    wait_text(tab, "#queue", "LEFT")
    tab.click("#sign-out")
    wait_text(tab, "#session", "signed out")
    assert tab.evaluate("window.__violations") == []
    # The check can fail: an inline style is refused and reported.
    tab.evaluate("document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">x</p>')")
    until(tab, "window.__violations.length > 0")
    assert tab.evaluate("window.__violations")[0].startswith("style-src")
    assert any("Content Security Policy" in error for error in strict.errors)
    tab.evaluate("window.__violations = []")
    strict.errors.clear()


def test_the_react_hooks_render_and_update_in_chromium(device, shop):
    app = device()
    tab = app.tab("/react.html")
    wait_text(tab, "#session", "signed out")
    tab.click("#guest")
    wait_text(tab, "#session", "guest sess_")
    tab.click("#enter")
    wait_text(tab, "#queue", "QUEUED ")
    other = app.tab("/react.html")  # a second tab renders the restored session
    wait_text(other, "#session", "guest sess_")
    wait_text(other, "#queue", "QUEUED")
    tab.click("#leave")
    wait_text(other, "#queue", "LEFT")  # useQueue's watch in the other tab saw it
    tab.click("#sign-out")
    wait_text(tab, "#session", "signed out")
    wait_text(other, "#session", "signed out")
    wait_text(other, "#queue", "none")


def test_the_classic_script_build_defines_window_usher(device, shop):
    page = device().tab("/global.html")
    assert page.evaluate("[typeof Usher, typeof Usher.UsherError]") == ["function", "function"]
    pk = shop.keys["publishableKey"]
    session = page.evaluate(f"""async () => {{
        const usher = new Usher({{ publishableKey: {pk!r}, baseUrl: {shop.usher_url!r} }});
        await usher.ready;
        const session = await usher.signInAsGuest();
        const error = await usher.queues.status("queue_unknown").catch((e) => e);
        return {{ type: session.type, error: error.error, isError: error instanceof Usher.UsherError }};
    }}""")
    assert session == {"type": "guest", "error": "not_found", "isError": True}


# Counts the Web Workers a page makes (an init script runs before the page's own, outside its CSP).
COUNT_WORKERS = """
window.__workers = 0;
const PageWorker = window.Worker;
window.Worker = class extends PageWorker {
  constructor(...args) { super(...args); window.__workers++; }
};
"""


@pytest.fixture(scope="module")
def altcha_shops(live_server, actions_factory, react_bundle):
    """One mode with ALTCHA on every protected route, and its shop twice: under the strict CSP,
    and with `worker-src blob:` added (where the SDK may solve off the main thread)."""
    keys = actions_factory("Drop with ALTCHA")["keys"]["test"]
    experience = http("POST", live_server.url + "/api/v1/experiences", headers=secret(keys["secretKey"]),
                      body={"name": "Drop"}).body
    queue = http("POST", live_server.url + "/api/v1/queues", headers=secret(keys["secretKey"]),
                 body={"experienceId": experience["id"], "name": "Main"}).body
    strict = Shop(live_server.url, keys, queue["id"], react_bundle)
    workers = Shop(live_server.url, keys, queue["id"], react_bundle, csp_extra="; worker-src blob:")
    with strict.server, workers.server:
        reply = http("PATCH", live_server.url + "/api/v1/settings", headers=secret(keys["secretKey"]),
                     body={"allowedOrigins": [strict.url, workers.url], "botDefense": "altcha",
                           "altchaComplexity": 20000})
        assert reply.status == 200 and reply.body["botDefense"] == "altcha"
        time.sleep(1.1)  # gunicorn's workers may hold the key's row for PUBLISHABLE_KEY_CACHE_SECONDS
        yield strict, workers


@pytest.mark.parametrize("worker_allowed", [False, True], ids=["strict-csp-inline", "blob-worker"])
def test_the_sdk_solves_altcha_itself_under_a_strict_csp_or_in_a_worker(browser, altcha_shops, worker_allowed):
    """Bot defense: the shop page calls only signInAsGuest and queues.enter; the SDK meets
    `challenge_required`, fetches a challenge, solves it (in a blob: Web Worker where the CSP
    allows one, inline otherwise) and retries once."""
    shop = altcha_shops[worker_allowed]
    device = Device(browser, shop)
    device.context.add_init_script(COUNT_WORKERS)
    try:
        tab = device.tab()
        tab.click("#guest")
        wait_text(tab, "#session", "guest ", timeout=60)
        tab.click("#enter")
        wait_text(tab, "#queue", "QUEUED, position", timeout=60)
        answered = [(urlsplit(r.url).path, r.status) for r in device.responses
                    if urlsplit(r.url).path.startswith("/api/v1/") and r.request.method != "OPTIONS"]
        guest = [status for path, status in answered if path == "/api/v1/auth/guest"]
        enter = [status for path, status in answered if path.endswith("/enter")]
        assert guest == [403, 201] and enter == [403, 200], answered
        assert len(device.api("/auth/challenge", "GET")) == 2
        violations = tab.evaluate("window.__violations")
        if worker_allowed:
            assert violations == [] and tab.evaluate("window.__workers") == 2
        else:  # the refused worker is the only violation; the solve ran inline
            assert violations and all(v.startswith("worker-src blob") for v in violations), violations
    finally:
        device.close()
