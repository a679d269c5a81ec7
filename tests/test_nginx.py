"""End to end through Debian's nginx with deploy/nginx.conf, gunicorn (4 workers) and Redis."""

from __future__ import annotations

import re
import shutil
import time

import pytest

from tests.conftest import APP_SECRET
from tests.helpers import bearer, consumer, publishable, secret
from tests.live import LiveServer, NginxServer, RedisServer, https

pytestmark = [pytest.mark.gunicorn, pytest.mark.services,
              pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (.ci/run installs it)")]


@pytest.fixture(scope="module")
def stack(database_url, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("nginx")
    redis = RedisServer(workdir)
    redis.start()
    app = LiveServer({"DATABASE_URL": database_url, "APP_SECRET": APP_SECRET, "WEB_CONCURRENCY": "4",
                      "RATELIMIT_STORAGE_URI": redis.url, "TRUSTED_PROXY_COUNT": "1",
                      "ISSUER": "https://usher.test"}, workdir / "gunicorn.log")
    app.start()
    nginx = NginxServer(workdir, app.port)
    nginx.start()
    yield nginx, app
    nginx.stop()
    app.stop()
    redis.stop()


def _code(url: str, sk: str, to: str) -> str:
    messages = https("GET", url + "/api/v1/test/otp-messages", secret(sk)).body["data"]
    body = next(m["body"] for m in messages if m["to"] == to)
    return re.search(r"\b(\d{6})\b", body).group(1)


def test_guest_otp_refresh_logout_journey_through_nginx(stack, actions):
    nginx, _ = stack
    keys = actions.create_org()["keys"]["test"]
    pk, sk, url = keys["publishableKey"], keys["secretKey"], nginx.url
    guest = https("POST", url + "/api/v1/auth/guest", publishable(pk))
    assert guest.status == 201 and guest.headers["X-Request-Id"]
    assert https("POST", url + "/api/v1/auth/otp/request", publishable(pk), {"email": "shopper@example.com"}).status \
        == 202
    verified = https("POST", url + "/api/v1/auth/otp/verify", consumer(pk, guest.body["accessToken"]),
                     {"email": "shopper@example.com", "code": _code(url, sk, "shopper@example.com")})
    assert verified.status == 200 and verified.body["session"]["guestId"] == guest.body["session"]["consumerId"]
    refreshed = https("POST", url + "/api/v1/auth/refresh", publishable(pk),
                      {"refreshToken": verified.body["refreshToken"]})
    assert refreshed.status == 200
    assert https("POST", url + "/api/v1/auth/logout", bearer(refreshed.body["accessToken"])).status == 204
    dead = https("POST", url + "/api/v1/auth/refresh", publishable(pk),
                 {"refreshToken": refreshed.body["refreshToken"]})
    assert dead.status == 401 and dead.body["error"] == "refresh_token_invalid"


def test_rate_limit_sees_the_address_nginx_appended_and_ignores_forgeries(stack, actions, client):
    nginx, _ = stack
    keys = actions.create_org()["keys"]["test"]
    client.patch("/api/v1/settings", json={"otpRequestsPerIpPerHour": 3}, headers=secret(keys["secretKey"]))
    url = nginx.url + "/api/v1/auth/otp/request"
    statuses = [https("POST", url, {**publishable(keys["publishableKey"]), "X-Forwarded-For": f"198.51.100.{i}"},
                      {"email": f"x{i}@example.com"}, source="127.0.0.2").status for i in range(4)]
    assert statuses == [202, 202, 202, 429]
    # Another client address (as nginx saw it) has its own budget.
    other = https("POST", url, publishable(keys["publishableKey"]), {"email": "y@example.com"}, source="127.0.0.3")
    assert other.status == 202


def test_nginx_answers_json_for_oversized_bodies_and_redirects_plain_http(stack, actions):
    nginx, _ = stack
    keys = actions.create_org()["keys"]["test"]
    big = https("POST", nginx.url + "/api/v1/experiences", secret(keys["secretKey"]), {"name": "x" * 70000})
    assert big.status == 413 and big.body["error"] == "payload_too_large"
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", nginx.http_port, timeout=5)
    connection.request("GET", "/api/v1/keys")
    response = connection.getresponse()
    assert response.status == 301 and response.headers["Location"].startswith("https://")
    connection.close()



def test_cors_and_security_headers_pass_through_nginx(stack, actions, client):
    """nginx neither swallows OPTIONS nor strips Usher's headers, and adds HSTS."""
    nginx, _ = stack
    keys = actions.create_org()["keys"]["live"]
    shop = "https://shop.example.com"
    preflight = https("OPTIONS", nginx.url + "/api/v1/auth/guest",
                      {"Origin": shop, "Access-Control-Request-Method": "POST",
                       "Access-Control-Request-Headers": "x-publishable-key"})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == shop
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "x-publishable-key" in preflight.headers["Access-Control-Allow-Headers"].lower()
    assert preflight.headers["Access-Control-Max-Age"] == "600" and "Origin" in preflight.headers["Vary"]
    refused = https("POST", nginx.url + "/api/v1/auth/guest", {**publishable(keys["publishableKey"]), "Origin": shop})
    assert refused.status == 403 and refused.body["error"] == "origin_not_allowed"
    # The page can read its refusal (issue 23): the refused origin is echoed on the 403 alone.
    assert refused.headers["Access-Control-Allow-Origin"] == shop
    client.patch("/api/v1/settings", json={"allowedOrigins": [shop]}, headers=secret(keys["secretKey"]))
    time.sleep(1.1)  # gunicorn's workers may reuse the key's row (and its origins) for PUBLISHABLE_KEY_CACHE_SECONDS
    allowed = https("POST", nginx.url + "/api/v1/auth/guest", {**publishable(keys["publishableKey"]), "Origin": shop})
    assert allowed.status == 201 and allowed.headers["Access-Control-Allow-Origin"] == shop
    assert set(allowed.headers["Access-Control-Expose-Headers"].replace(" ", "").split(",")) == {
        "X-Request-Id", "Retry-After"}
    assert allowed.headers["Cache-Control"] == "no-store" and allowed.headers["X-Content-Type-Options"] == "nosniff"
    assert allowed.headers["Strict-Transport-Security"].startswith("max-age=")
    big = https("POST", nginx.url + "/api/v1/experiences", secret(keys["secretKey"]), {"name": "x" * 70000})
    assert big.status == 413 and big.headers["X-Content-Type-Options"] == "nosniff"
    assert big.headers["Strict-Transport-Security"].startswith("max-age=")


def _tls_request(url: str, method: str, path: str, headers: dict, body: str | None = None):
    import http.client
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=30, context=context)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        connection.close()


def test_dashboard_forms_work_behind_nginx_on_a_port_other_than_443(stack, actions):
    """Issue 22, row 10: nginx passes `Host` with its port, so the dashboard's CSRF check (which
    compares the Referer's host and port with `Host`) accepts the sign-in form off port 443."""
    from urllib.parse import urlencode

    nginx, _ = stack
    assert not nginx.url.endswith(":443")
    keys = actions.create_org()["keys"]["test"]
    status, headers, page = _tls_request(nginx.url, "GET", "/dashboard/sign-in", {})
    assert status == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    form = urlencode({"csrf_token": token, "key": keys["secretKey"]})
    status, headers, page = _tls_request(nginx.url, "POST", "/dashboard/sign-in", {
        "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded", "Origin": nginx.url,
        "Referer": nginx.url + "/dashboard/sign-in"}, form)
    assert status == 303 and headers["Location"] == "/dashboard/keys", (status, page[:500])


def test_a_forged_access_log_line_through_nginx_stays_one_line(stack):
    """Issue 22, row 7, through nginx: `%0a` in the path is escaped in gunicorn's log."""
    nginx, app = stack
    marker = "forged-by-row-7"
    status, _, _ = _tls_request(nginx.url, "GET", f"/api/v1/x%0a{marker}%0d", {})
    assert status == 404
    deadline = time.monotonic() + 5
    while marker not in app.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [line for line in app.log_path.read_text().splitlines() if marker in line]
    assert len(lines) == 1 and "/api/v1/x\\n" + marker + "\\r" in lines[0], lines
