"""The dashboard over HTTP (Flask test client): sign-in, the session and its ends, CSRF, the
headers, and each page calling the admin API's rules. The browser flows are in
tests/test_dashboard_browser.py."""

from __future__ import annotations

import ast
import math
import re
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from sqlalchemy import delete, event, select, update

from app import create_app
from app.models import (
    DashboardSession,
    OrganizationSettings,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookSubscription,
)
from app.services.dashboard import DashboardSessions  # noqa: F401 (the store the pages use)
from app.services.orgs import SELF_REVOKE
from app.services.webhooks import signing_secrets
from tests.conftest import APP_SECRET
from tests.helpers import CSRF, Dashboard, Statements, as_form, publishable, secret

# The second step of Revoke, Delete, End all sessions and Roll "now" (issue 22, row 13; the first
# step is tested in tests/test_hardening_round3.py).
CONFIRM = {"confirm": "yes"}
NEW_VALUE = re.compile(r'id="new-key-value"[^>]*value="([^"]+)"')
NEW_SECRET = re.compile(r'id="new-secret-value"[^>]*value="(whsec_[^"]+)"')


def signed_out(response) -> bool:
    return response.status_code == 303 and response.headers["Location"] == "/dashboard/sign-in"


@contextmanager
def failing_reveal(app):
    """A database failure at the statement that holds a shown-once value for the next page."""
    engine = app.extensions["usher"].db.engine

    def fail_holding(_conn, _cursor, statement, *_args):
        if statement.startswith("UPDATE dashboard_sessions") and "reveal" in statement:
            raise engine.dialect.loaded_dbapi.OperationalError("injected: the reveal is not stored")

    event.listen(engine, "before_cursor_execute", fail_holding)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", fail_holding)


def held_reveals(app, key_id: str) -> list:
    """The values held for a next page by the dashboard's sessions of a key."""
    with app.extensions["usher"].db.transaction() as session:
        return [row.reveal for row in session.scalars(select(DashboardSession).where(DashboardSession.key_id == key_id))
                if row.reveal is not None]


def test_sign_in_page_has_the_secret_key_field_and_the_security_headers(dash):
    response = dash.get("/dashboard/sign-in")
    assert response.status_code == 200
    assert '<label for="key">Secret key</label>' in response.text
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    # Every asset is the app's own.
    assets = re.findall(r'(?:src|href)="([^"#]+)"', response.text)
    assert assets and all(url.startswith("/dashboard/") for url in assets), assets
    script = dash.client.get("/dashboard/static/dashboard.js")
    assert script.status_code == 200 and "data-copy-target" in script.text
    script.close()


def test_pages_redirect_to_sign_in_without_a_session(dash):
    for path in ("/dashboard", "/dashboard/keys", "/dashboard/settings", "/dashboard/consumers", "/dashboard/outbox",
                 "/dashboard/webhooks"):
        assert signed_out(dash.client.get(path)), path


def test_sign_in_keeps_only_the_key_id_and_sets_a_strict_cookie(app, dash, org):
    value = org["keys"]["test"]["secretKey"]
    response = dash.sign_in(value)
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("usher_dashboard=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/dashboard" in cookie
    assert "Secure" not in cookie  # ISSUER is http here; see the https test
    # The key value is in no cookie, no page and no row after sign-in.
    assert value not in cookie and value[-12:] not in cookie
    for path in ("/dashboard/keys", "/dashboard/settings", "/dashboard/consumers", "/dashboard/outbox"):
        page = dash.get(path)
        assert page.status_code == 200, path
        assert value not in page.text
    keys = dash.client.get("/api/v1/keys", headers=secret(value)).json["data"]
    own = next(k for k in keys if k["type"] == "secret")
    with app.extensions["usher"].db.transaction() as session:
        rows = session.scalars(select(DashboardSession).where(DashboardSession.key_id == own["id"])).all()
        assert len(rows) == 1
        assert value not in repr(rows[0].__dict__) and rows[0].reveal is None


def test_cookie_is_secure_when_the_issuer_is_https(app_config, org):
    https_app = create_app({**app_config, "ISSUER": "https://usher.example"})
    try:
        client = https_app.test_client()
        page = client.get("/dashboard/sign-in", base_url="https://usher.example")
        token = CSRF.search(page.text).group(1)
        response = client.post("/dashboard/sign-in", base_url="https://usher.example",
                               headers={"Referer": "https://usher.example/dashboard/sign-in"},
                               data={"key": org["keys"]["test"]["secretKey"], "csrf_token": token})
        assert response.status_code == 303
        assert "Secure" in response.headers["Set-Cookie"]
    finally:
        https_app.extensions["usher"].db.dispose()


def test_wrong_keys_do_not_sign_in(dash, org):
    dash.get("/dashboard/sign-in")
    publishable_key = dash.post("/dashboard/sign-in", {"key": org["keys"]["test"]["publishableKey"]})
    assert publishable_key.status_code == 400 and "Secret key required" in publishable_key.text
    unknown = dash.post("/dashboard/sign-in", {"key": "sk_test_" + "A" * 40})
    assert unknown.status_code == 400 and "Authentication required" in unknown.text
    assert 'aria-invalid="true"' in unknown.text
    assert signed_out(dash.client.get("/dashboard/keys"))


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(dash, client, org):
    keys = org["keys"]["test"]
    refused = dash.post("/dashboard/sign-in", {"key": keys["secretKey"]}, csrf=False)
    assert refused.status_code == 400 and "set-cookie" not in {h.lower() for h in refused.headers if "token" in h}
    assert signed_out(dash.client.get("/dashboard/keys"))
    dash.sign_in(keys["secretKey"])
    before = client.get("/api/v1/settings", headers=secret(keys["secretKey"])).json
    for path, data in (("/dashboard/settings", {**before, "accessTokenTtl": "120"}),
                       ("/dashboard/keys", {"type": "secret"}),
                       ("/dashboard/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["session.created"]}),
                       ("/dashboard/sign-out", {})):
        refused = dash.post(path, data, csrf=False)
        assert refused.status_code == 400, path
        assert "Form refused" in refused.text
        assert refused.headers["Content-Security-Policy"].endswith("base-uri 'none'")
        wrong = dash.client.post(path, data={**data, "csrf_token": "forged"})
        assert wrong.status_code == 400, path
    assert client.get("/api/v1/settings", headers=secret(keys["secretKey"])).json == before
    assert len(client.get("/api/v1/keys", headers=secret(keys["secretKey"])).json["data"]) == 2
    assert client.get("/api/v1/webhook-endpoints", headers=secret(keys["secretKey"])).json["data"] == []
    assert dash.get("/dashboard/keys").status_code == 200  # still signed in


def test_the_json_api_takes_no_csrf_token(client, org):
    """CSRF is the dashboard's: the admin API (no cookies) works as before."""
    created = client.post("/api/v1/keys", json={"type": "secret"}, headers=secret(org["keys"]["test"]["secretKey"]))
    assert created.status_code == 201
    assert "Set-Cookie" not in created.headers


def test_session_ends_when_its_key_is_revoked(dash, client, org):
    keys = org["keys"]["test"]
    other = client.post("/api/v1/keys", json={"type": "secret"}, headers=secret(keys["secretKey"])).json
    dash.sign_in(other["key"])
    assert client.delete(f"/api/v1/keys/{other['id']}", headers=secret(keys["secretKey"])).status_code == 204
    assert signed_out(dash.client.get("/dashboard/settings"))
    page = dash.get("/dashboard/sign-in")
    assert "Your session has ended" in page.text
    assert signed_out(dash.client.get("/dashboard/keys"))


def test_session_ends_when_its_key_expires_and_after_8_idle_hours(app, dash, client, org):
    keys = org["keys"]["test"]
    clock = app.extensions["usher"].clock
    other = client.post("/api/v1/keys", json={"type": "secret"}, headers=secret(keys["secretKey"])).json
    rolled = client.post(f"/api/v1/keys/{other['id']}/roll", json={"expiresIn": 600},
                         headers=secret(keys["secretKey"])).json
    dash.sign_in(other["key"])
    try:
        clock.advance(599)
        assert dash.get("/dashboard/keys").status_code == 200
        clock.advance(2)
        assert signed_out(dash.client.get("/dashboard/keys"))
    finally:
        clock.advance(-601)

    fresh = Dashboard(app.test_client())
    fresh.sign_in(rolled["key"])
    try:
        clock.advance(7 * 3600)
        assert fresh.get("/dashboard/keys").status_code == 200  # used: the 8 h start again
        clock.advance(7 * 3600)
        assert fresh.get("/dashboard/keys").status_code == 200
        clock.advance(8 * 3600)
        assert signed_out(fresh.client.get("/dashboard/keys"))
    finally:
        clock.advance(-22 * 3600)


def test_sign_out_ends_the_server_side_session(app, dash, org):
    dash.sign_in(org["keys"]["test"]["secretKey"])
    stolen = dash.client.get_cookie("usher_dashboard", path="/dashboard").value
    response = dash.post("/dashboard/sign-out")
    assert signed_out(response)
    assert signed_out(dash.client.get("/dashboard/keys"))
    replay = app.test_client()
    replay.set_cookie("usher_dashboard", stolen, path="/dashboard")
    assert signed_out(replay.get("/dashboard/keys"))  # the old cookie names no session any more


def test_roll_shows_the_new_value_once_and_it_works(dash, client, org):
    keys = org["keys"]["test"]
    dash.sign_in(keys["secretKey"])
    listed = client.get("/api/v1/keys", headers=secret(keys["secretKey"])).json["data"]
    pk = next(k for k in listed if k["type"] == "publishable")
    response = dash.post(f"/dashboard/keys/{pk['id']}/roll", {"expiresIn": "3600"})
    assert response.status_code == 303 and response.headers["Location"] == "/dashboard/keys"
    page = dash.get("/dashboard/keys")
    value = NEW_VALUE.search(page.text).group(1)
    assert value.startswith("pk_test_") and "shown this once" in page.text
    again = dash.get("/dashboard/keys")
    assert value not in again.text and "new-key-value" not in again.text
    # The new value works, the old one until its expiry (as through the API's roll).
    assert client.post("/api/v1/auth/guest", headers=publishable(value)).status_code == 201
    old = client.get(f"/api/v1/keys/{pk['id']}", headers=secret(keys["secretKey"])).json
    assert old["expiresAt"] is not None


def test_roll_is_validated_by_the_api_schema(dash, org):
    keys = org["keys"]["test"]
    dash.sign_in(keys["secretKey"])
    key_id = re.search(r'/dashboard/keys/(key_[0-9A-Z]+)/roll', dash.get("/dashboard/keys").text).group(1)
    response = dash.post(f"/dashboard/keys/{key_id}/roll", {"expiresIn": "99999999"})
    assert response.status_code == 400
    assert "Must be greater than or equal to 0 and less than or equal to 2592000." in response.text


def test_rolling_the_signed_in_key_now_keeps_the_session_on_its_successor(dash, client, org):
    keys = org["keys"]["test"]
    dash.sign_in(keys["secretKey"])
    own = next(k for k in client.get("/api/v1/keys", headers=secret(keys["secretKey"])).json["data"]
               if k["type"] == "secret")
    assert dash.post(f"/dashboard/keys/{own['id']}/roll", {"expiresIn": "0", **CONFIRM}).status_code == 303
    page = dash.get("/dashboard/keys")
    assert page.status_code == 200
    value = NEW_VALUE.search(page.text).group(1)
    assert client.get("/api/v1/keys", headers=secret(keys["secretKey"])).status_code == 401
    assert client.get("/api/v1/keys", headers=secret(value)).status_code == 200


def test_a_roll_and_its_shown_once_value_are_one_transaction(app, dash, client, org):
    """Rolling the signed-in key now: the roll, the session moving to the successor and the value
    held for the next page are one write transaction. A database failure while holding the value
    leaves the old key working and nothing half-written (no successor, no audit event, the
    session on the old key); a roll that commits always has its value, shown exactly once."""
    keys = org["keys"]["test"]
    dash.sign_in(keys["secretKey"])
    listed = client.get("/api/v1/keys", headers=secret(keys["secretKey"])).json["data"]
    own = next(k for k in listed if k["type"] == "secret")
    with failing_reveal(app):
        failed = dash.post(f"/dashboard/keys/{own['id']}/roll", {"expiresIn": "0", **CONFIRM})
    assert failed.status_code >= 500
    assert client.get("/api/v1/keys", headers=secret(keys["secretKey"])).json["data"] == listed
    rolled = client.get("/api/v1/audit-events?type=key.rolled", headers=secret(keys["secretKey"])).json["data"]
    assert rolled == []
    with app.extensions["usher"].db.transaction() as session:
        row = session.scalars(select(DashboardSession).where(DashboardSession.key_id == own["id"])).one()
        assert row.reveal is None
    page = dash.get("/dashboard/keys")
    assert page.status_code == 200 and "new-key-value" not in page.text  # still signed in, nothing to show

    with Statements(app) as statements:
        response = dash.post(f"/dashboard/keys/{own['id']}/roll", {"expiresIn": "0", **CONFIRM})
    assert response.status_code == 303 and response.headers["Location"] == "/dashboard/keys"
    assert len(statements.begins) == 1, statements.seen  # the roll, the session's key and the reveal
    page = dash.get("/dashboard/keys")
    value = NEW_VALUE.search(page.text).group(1)
    assert value.startswith("sk_test_") and "shown this once" in page.text
    again = dash.get("/dashboard/keys")
    assert again.status_code == 200 and value not in again.text and "new-key-value" not in again.text
    assert client.get("/api/v1/keys", headers=secret(keys["secretKey"])).status_code == 401
    assert client.get("/api/v1/keys", headers=secret(value)).status_code == 200


def test_a_key_is_not_created_when_its_session_ended_before_the_value_was_held(app, dash, client, org,
                                                                               monkeypatch):
    """The session signed out in another tab while the key was being made: there is nowhere to
    hold its value, so the creation rolls back (401, sign in again) instead of committing a key
    whose value nobody will ever see."""
    import app.dashboard.keys as keys_page

    keys = org["keys"]["test"]
    dash.sign_in(keys["secretKey"])
    listed = client.get("/api/v1/keys", headers=secret(keys["secretKey"])).json["data"]
    real = keys_page.create_key_for

    def create_then_session_ends(db, *args, **kwargs):
        made = real(db, *args, **kwargs)
        db.execute(delete(DashboardSession))  # the sign-out, just before the value is held
        return made

    monkeypatch.setattr(keys_page, "create_key_for", create_then_session_ends)
    refused = dash.post("/dashboard/keys", {"type": "restricted", "scopes": "queues:read"})
    assert refused.status_code == 401 and "sign in again" in refused.text
    assert client.get("/api/v1/keys", headers=secret(keys["secretKey"])).json["data"] == listed
    created = client.get("/api/v1/audit-events?type=key.created", headers=secret(keys["secretKey"])).json["data"]
    assert created == []


def test_a_created_key_and_its_shown_once_value_are_one_transaction(app, dash, client, org):
    """As for a roll: a key is created only with its value held for the next page."""
    keys = org["keys"]["test"]
    dash.sign_in(keys["secretKey"])
    listed = client.get("/api/v1/keys", headers=secret(keys["secretKey"])).json["data"]
    with failing_reveal(app):
        assert dash.post("/dashboard/keys", {"type": "secret"}).status_code >= 500
    assert client.get("/api/v1/keys", headers=secret(keys["secretKey"])).json["data"] == listed
    created = client.get("/api/v1/audit-events?type=key.created", headers=secret(keys["secretKey"])).json["data"]
    assert created == []

    with Statements(app) as statements:
        assert dash.post("/dashboard/keys", {"type": "secret"}).status_code == 303
    assert len(statements.begins) == 1, statements.seen
    value = NEW_VALUE.search(dash.get("/dashboard/keys").text).group(1)
    assert "new-key-value" not in dash.get("/dashboard/keys").text
    assert client.get("/api/v1/keys", headers=secret(value)).status_code == 200


def test_create_and_revoke_keys_with_the_api_rules(dash, client, org):
    keys = org["keys"]["test"]
    dash.sign_in(keys["secretKey"])
    assert dash.post("/dashboard/keys", {"type": "secret"}).status_code == 303
    value = NEW_VALUE.search(dash.get("/dashboard/keys").text).group(1)
    assert client.get("/api/v1/keys", headers=secret(value)).status_code == 200
    bad = dash.post("/dashboard/keys", {"type": "root"})
    assert bad.status_code == 400
    assert ('<p class="field-error" id="new-key-type-error">Must be one of: publishable, secret, restricted.</p>'
            in bad.text)
    no_scopes = dash.post("/dashboard/keys", {"type": "restricted"})
    assert no_scopes.status_code == 400 and "A restricted key needs its scopes." in no_scopes.text
    listed = client.get("/api/v1/keys", headers=secret(keys["secretKey"])).json["data"]
    own = next(k for k in listed if k["type"] == "secret" and keys["secretKey"].endswith(k["last4"]))
    new = next(k for k in listed if value.endswith(k["last4"]))
    assert dash.post(f"/dashboard/keys/{new['id']}/revoke", CONFIRM).status_code == 303
    assert client.get("/api/v1/keys", headers=secret(value)).status_code == 401
    assert dash.post(f"/dashboard/keys/{own['id']}/revoke", CONFIRM).status_code == 303
    assert SELF_REVOKE in dash.get("/dashboard/keys").text
    assert client.get("/api/v1/keys", headers=secret(keys["secretKey"])).status_code == 200


def test_another_tenants_ids_are_not_found(dash, client, org, actions):
    other = actions.create_org("Other")["keys"]["test"]
    foreign = client.get("/api/v1/keys", headers=secret(other["secretKey"])).json["data"][0]
    dash.sign_in(org["keys"]["test"]["secretKey"])
    response = dash.post(f"/dashboard/keys/{foreign['id']}/revoke")
    assert response.status_code == 404 and "not_found" in response.text
    assert client.get("/api/v1/keys", headers=secret(other["secretKey"])).status_code == 200
    assert dash.get("/dashboard/consumers/cons_01HXYZ123456789ABCDEFGHJK").status_code == 404


def test_settings_are_validated_with_the_api_messages_and_saved(dash, client, org):
    keys = org["keys"]["test"]
    dash.sign_in(keys["secretKey"])
    form = client.get("/api/v1/settings", headers=secret(keys["secretKey"])).json
    api = client.patch("/api/v1/settings", json={"accessTokenTtl": 0}, headers=secret(keys["secretKey"]))
    message = api.json["details"]["accessTokenTtl"][0]
    response = dash.post("/dashboard/settings", {**as_form(form), "accessTokenTtl": "0"})
    assert response.status_code == 400
    assert f'<p class="field-error" id="accessTokenTtl-error">{message}</p>' in response.text
    assert client.get("/api/v1/settings", headers=secret(keys["secretKey"])).json == form
    saved = dash.post("/dashboard/settings", {**as_form(form), "accessTokenTtl": "900", "otpLength": "8"})
    assert saved.status_code == 303
    assert client.get("/api/v1/settings", headers=secret(keys["secretKey"])).json == {
        **form, "accessTokenTtl": 900, "otpLength": 8}


def test_bot_defense_settings_keep_the_captcha_secret_hidden(dash, client, org, app):
    keys = org["keys"]["test"]
    dash.sign_in(keys["secretKey"])
    page = dash.get("/dashboard/settings").text
    assert 'name="botDefense"' in page and 'name="altchaComplexity"' in page
    assert re.search(r'<input id="botDefenseSecret" name="botDefenseSecret" type="password"[^>]*value=""', page)
    form = as_form({key: value for key, value in client.get(
        "/api/v1/settings", headers=secret(keys["secretKey"])).json.items() if value is not None})
    refused = dash.post("/dashboard/settings", {**form, "botDefense": "turnstile"})
    assert refused.status_code == 400
    assert "turnstile needs botDefenseSiteKey and botDefenseSecret." in refused.text
    saved = dash.post("/dashboard/settings", {**form, "botDefense": "turnstile", "botDefenseSiteKey": "site-1",
                                              "botDefenseSecret": "dash-SECRET-1"})
    assert saved.status_code == 303
    after = client.get("/api/v1/settings", headers=secret(keys["secretKey"])).json
    assert after["botDefense"] == "turnstile" and after["botDefenseSecretSet"] is True
    assert "dash-SECRET-1" not in dash.get("/dashboard/settings").text
    with app.extensions["usher"].db.sessionmaker() as session:
        sealed = session.get_one(OrganizationSettings, (org["organizationId"], "test")).bot_defense_secret
    # Saving the page again with the secret field left empty keeps the stored secret.
    assert dash.post("/dashboard/settings", {**as_form(after), "botDefenseSecret": ""}).status_code == 303
    with app.extensions["usher"].db.sessionmaker() as session:
        assert session.get_one(OrganizationSettings, (org["organizationId"], "test")).bot_defense_secret == sealed


def test_settings_page_reads_as_prose(dash, org):
    """Hints render the API's `code` as code, say more than their label, and lifetimes show in
    days and hours as well as seconds."""
    dash.sign_in(org["keys"]["test"]["secretKey"])
    page = dash.get("/dashboard/settings").text
    hints = re.findall(r'<p class="hint" id="[^"]+">(.*?)</p>', page, re.DOTALL)
    assert hints and not any("`" in hint for hint in hints)
    assert "<code>https://shop.example.com</code>" in page
    assert '<span class="duration">= 30 days</span>' in page and '<span class="duration">= 1 hour</span>' in page
    labels = dict(re.findall(r'<label for="([^"]+)">([^<]+?) <span class="api-name">', page))
    for key, hint in re.findall(r'<p class="hint" id="([^"]+)-hint">(.*?)</p>', page, re.DOTALL):
        assert hint.strip().rstrip(".").lower() != labels[key].strip().lower(), key


def test_the_keys_table_has_no_column_that_repeats_the_pages_mode(dash, org):
    dash.sign_in(org["keys"]["test"]["secretKey"])
    page = dash.get("/dashboard/keys").text
    assert "Keys of test mode" in page
    assert re.findall(r"<th[^>]*>([^<]+)</th>", page)[:3] == ["Type", "Key", "Scopes"]


def test_consumers_search_and_ending_sessions(dash, client, tenant, org):
    first, second = tenant.guest(), tenant.guest()
    dash.sign_in(org["keys"]["test"]["secretKey"])
    consumer_id = first["session"]["consumerId"]
    listed = dash.get("/dashboard/consumers")
    assert consumer_id in listed.text
    found = dash.get(f"/dashboard/consumers?q={consumer_id}")
    assert found.text.count('href="/dashboard/consumers/') == 1 and consumer_id in found.text
    assert dash.get("/dashboard/consumers?q=nobody@example.com").text.count('href="/dashboard/consumers/') == 0
    too_long = dash.get("/dashboard/consumers?q=" + "1" * 25)
    assert too_long.status_code == 400 and "Length must be between 1 and 20." in too_long.text
    detail = dash.get(f"/dashboard/consumers/{consumer_id}")
    assert detail.status_code == 200 and "End all sessions" in detail.text
    ended = dash.post(f"/dashboard/consumers/{consumer_id}/end-sessions", CONFIRM)
    assert ended.status_code == 303
    assert "Ended 1 session." in dash.get(f"/dashboard/consumers/{consumer_id}").text
    assert tenant.refresh(first["refreshToken"]).status_code == 401
    assert tenant.refresh(second["refreshToken"]).status_code == 200  # another consumer: untouched
    # One session at a time, from the other consumer's page.
    other_id, other_session = second["session"]["consumerId"], second["session"]["sessionId"]
    assert other_session in dash.get(f"/dashboard/consumers/{other_id}").text
    ended_one = dash.post(f"/dashboard/sessions/{other_session}/end")
    assert ended_one.headers["Location"] == f"/dashboard/consumers/{other_id}"
    assert "Ended the session." in dash.get(f"/dashboard/consumers/{other_id}").text
    sessions = client.get(f"/api/v1/consumers/{other_id}/sessions", headers=secret(org["keys"]["test"]["secretKey"]))
    assert [s["revokedReason"] for s in sessions.json["data"]] == ["admin"]


def test_outbox_is_test_mode_only(dash, org):
    dash.sign_in(org["keys"]["live"]["secretKey"])
    keys_page = dash.get("/dashboard/keys")
    assert "Test outbox" not in keys_page.text and "live mode" in keys_page.text
    response = dash.get("/dashboard/outbox")
    assert response.status_code == 403 and "only in test mode" in response.text


def restricted_key(client, secret_key: str, *scopes: str) -> dict:
    created = client.post("/api/v1/keys", json={"type": "restricted", "scopes": list(scopes)},
                          headers=secret(secret_key))
    assert created.status_code == 201, created.json
    return created.json


def test_a_restricted_key_sees_and_reaches_only_its_scopes(dash, client, org):
    keys = org["keys"]["test"]
    reader = restricted_key(client, keys["secretKey"], "experiences:read")
    dash.get("/dashboard/sign-in")
    signed_in = dash.post("/dashboard/sign-in", {"key": reader["key"]})
    assert signed_in.status_code == 303 and signed_in.headers["Location"] == "/dashboard/"
    home = dash.get("/dashboard/")
    assert "reach no dashboard page: experiences:read." in home.text
    for label in ("API keys", "Settings", "Consumers", "Audit log", "Webhooks", "Test outbox"):
        assert f">{label}</a>" not in home.text
    for path in ("/dashboard/settings", "/dashboard/keys", "/dashboard/consumers", "/dashboard/audit",
                 "/dashboard/outbox", "/dashboard/webhooks"):
        refused = dash.get(path)
        assert refused.status_code == 403, path
        assert "insufficient_scope" in refused.text
    before = client.get("/api/v1/settings", headers=secret(keys["secretKey"])).json
    assert dash.post("/dashboard/settings", {**before, "accessTokenTtl": "60"}).status_code == 403
    assert client.get("/api/v1/settings", headers=secret(keys["secretKey"])).json == before


def test_a_restricted_key_gives_away_no_scope_it_lacks(dash, client, org):
    keys = org["keys"]["test"]
    operator = restricted_key(client, keys["secretKey"], "keys:write", "consumers:read")
    dash.sign_in(operator["key"])
    page = dash.get("/dashboard/keys")
    nav = page.text[page.text.index('<nav'):page.text.index('</nav>')]
    assert ">API keys</a>" in nav and ">Consumers</a>" in nav and ">Test outbox</a>" in nav
    assert ">Settings</a>" not in nav and ">Audit log</a>" not in nav
    refused = dash.post("/dashboard/keys", {"type": "restricted", "scopes": ["settings:write"]})
    assert refused.status_code == 303
    assert "Needed: settings:write." in dash.get("/dashboard/keys").text
    secret_refused = dash.post("/dashboard/keys", {"type": "secret"})
    assert secret_refused.status_code == 303
    assert "This key does not have the scope this needs. Needed: audit:read," in dash.get("/dashboard/keys").text
    listed = client.get("/api/v1/keys", headers=secret(keys["secretKey"])).json["data"]
    assert [k["type"] for k in listed].count("restricted") == 1 and len(listed) == 3
    assert dash.post("/dashboard/keys", {"type": "restricted", "scopes": ["consumers:read"]}).status_code == 303
    value = NEW_VALUE.search(dash.get("/dashboard/keys").text).group(1)
    assert value.startswith("rk_test_")
    assert client.get("/api/v1/consumers", headers=secret(value)).status_code == 200
    assert client.get("/api/v1/keys", headers=secret(value)).status_code == 403
    # The consumer page shows sessions but no buttons to end them without sessions:write.
    consumer_id = client.post("/api/v1/auth/guest", headers=publishable(keys["publishableKey"])).json[
        "session"]["consumerId"]
    detail = dash.get(f"/dashboard/consumers/{consumer_id}")
    assert detail.status_code == 200 and "End all sessions" not in detail.text
    assert dash.post(f"/dashboard/consumers/{consumer_id}/end-sessions", CONFIRM).status_code == 403


def test_dashboard_changes_are_audit_events_with_the_key_as_actor(dash, client, org):
    keys = org["keys"]["test"]
    dash.sign_in(keys["secretKey"])
    own = next(k for k in client.get("/api/v1/keys", headers=secret(keys["secretKey"])).json["data"]
               if k["type"] == "secret")
    pk = next(k for k in client.get("/api/v1/keys", headers=secret(keys["secretKey"])).json["data"]
              if k["type"] == "publishable")
    form = client.get("/api/v1/settings", headers=secret(keys["secretKey"])).json
    assert dash.post("/dashboard/settings", {**as_form(form), "otpTtl": "120"}).status_code == 303
    assert dash.post(f"/dashboard/keys/{pk['id']}/roll", {"expiresIn": "0", **CONFIRM}).status_code == 303
    guest = client.post("/api/v1/auth/guest", headers=publishable(NEW_VALUE.search(
        dash.get("/dashboard/keys").text).group(1))).json
    assert dash.post(f"/dashboard/consumers/{guest['session']['consumerId']}/end-sessions", CONFIRM).status_code == 303
    events = client.get("/api/v1/audit-events", headers=secret(keys["secretKey"])).json["data"]
    assert [e["type"] for e in events] == ["consumer.sessions_revoked", "key.rolled", "settings.updated"]
    assert all(e["actor"] == {"type": "key", "id": own["id"]} for e in events)
    assert events[2]["details"] == {"changes": {"otpTtl": {"old": form["otpTtl"], "new": 120}}}
    # The Audit log page shows them, filtered by type and page by page.
    page = dash.get("/dashboard/audit")
    assert page.status_code == 200
    table = page.text[page.text.index("<tbody>"):]
    assert table.index("consumer.sessions_revoked") < table.index("key.rolled") < table.index("settings.updated")
    assert table.count(f'<span class="mono">{own["id"]}</span> <span class="tag">you</span>') == 3
    assert "otpTtl</span>: 300 → 120" in page.text
    filtered = dash.get("/dashboard/audit?type=key.rolled")
    rows = filtered.text[filtered.text.index("<tbody>"):]
    assert "key.rolled" in rows and "settings.updated" not in rows and "consumer.sessions_revoked" not in rows
    assert dash.get("/dashboard/audit?type=" + "x" * 80).status_code == 400


def test_audit_log_pages_through_older_events(dash, client, org):
    keys = org["keys"]["test"]
    for ttl in range(901, 926):  # 25 events through the API
        assert client.patch("/api/v1/settings", json={"accessTokenTtl": ttl},
                            headers=secret(keys["secretKey"])).status_code == 200
    dash.sign_in(keys["secretKey"])
    first = dash.get("/dashboard/audit")
    assert first.text.count("accessTokenTtl</span>:") == 20
    assert "925</div>" in first.text and "905</div>" not in first.text
    older = re.search(r'href="(/dashboard/audit\?startingAfter=evt_[0-9A-Z]+)">Older events', first.text).group(1)
    second = dash.get(older)
    assert second.text.count("accessTokenTtl</span>:") == 5
    assert "905</div>" in second.text and "Older events" not in second.text


def test_list_settings_are_one_entry_a_line_and_per_mode_settings_stay_in_their_mode(dash, client, org):
    keys = org["keys"]["test"]
    dash.sign_in(keys["secretKey"])
    form = client.get("/api/v1/settings", headers=secret(keys["secretKey"])).json
    fields = {k: ("\n".join(v) if isinstance(v, list) else v) for k, v in form.items()}
    saved = dash.post("/dashboard/settings", {**fields, "smsAllowedCountries": "FR\n\nDE\n", "smsPerHour": "50"})
    assert saved.status_code == 303, saved.text
    test_settings = client.get("/api/v1/settings", headers=secret(keys["secretKey"])).json
    assert test_settings["smsAllowedCountries"] == ["FR", "DE"] and test_settings["smsPerHour"] == 50
    live = client.get("/api/v1/settings", headers=secret(org["keys"]["live"]["secretKey"])).json
    assert live["smsAllowedCountries"] != ["FR", "DE"]  # a test key never changes live SMS settings
    page = dash.get("/dashboard/settings")
    assert '<textarea id="smsAllowedCountries"' in page.text and "FR\nDE</textarea>" in page.text
    bad = dash.post("/dashboard/settings", {**fields, "smsAllowedCountries": "FRA"})
    assert bad.status_code == 400 and 'id="smsAllowedCountries-error"' in bad.text


# -- Webhooks ----------------------------------------------------------------------------------
HOOK = {"url": "http://127.0.0.1:9/usher", "events": ["session.created", "session.revoked"],
        "description": "Shop backend"}


def audit_events(client, sk: str, event_type: str) -> list[dict]:
    response = client.get(f"/api/v1/audit-events?type={event_type}", headers=secret(sk))
    assert response.status_code == 200, response.json
    return response.json["data"]


def key_id_of(client, sk: str) -> str:
    return next(k["id"] for k in client.get("/api/v1/keys", headers=secret(sk)).json["data"]
                if k["type"] == "secret" and sk.endswith(k["last4"]))


def endpoint_row(app, endpoint_id: str) -> WebhookEndpoint | None:
    with app.extensions["usher"].db.transaction() as session:
        return session.get(WebhookEndpoint, endpoint_id)


def test_create_a_webhook_endpoint_its_secret_shown_once_and_audited(app, dash, client, org):
    sk = org["keys"]["test"]["secretKey"]
    dash.sign_in(sk)
    page = dash.get("/dashboard/webhooks")
    assert page.status_code == 200 and "No endpoint yet." in page.text
    nav = page.text[page.text.index("<nav"):page.text.index("</nav>")]
    assert '<a href="/dashboard/webhooks" aria-current="page">Webhooks</a>' in nav
    for event_type in ("session.created", "consumer.merged", "refresh_token.reused", "exchange_code.replayed"):
        assert f'name="events" value="{event_type}"' in page.text  # the event catalogue, as checkboxes

    created = dash.post("/dashboard/webhooks", HOOK)
    assert created.status_code == 303 and created.headers["Location"] == "/dashboard/webhooks"
    shown = dash.get("/dashboard/webhooks")
    value = NEW_SECRET.search(shown.text).group(1)
    assert "shown this once" in shown.text and 'data-copy-target="new-secret-value"' in shown.text
    assert "Created the endpoint for http://127.0.0.1:9/usher." in shown.text
    [endpoint] = client.get("/api/v1/webhook-endpoints", headers=secret(sk)).json["data"]
    assert {k: endpoint[k] for k in HOOK} == HOOK
    assert endpoint["id"] in shown.text and "session.created, session.revoked" in shown.text
    assert "Shop backend" in shown.text
    # The secret is the endpoint's signing secret, and a reload shows it no more.
    now = app.extensions["usher"].clock()
    assert signing_secrets(endpoint_row(app, endpoint["id"]), APP_SECRET, now) == [value]
    again = dash.get("/dashboard/webhooks")
    assert value not in again.text and "new-secret-value" not in again.text and endpoint["id"] in again.text
    # A new key's page does not show it either (each page takes only its own kind of value).
    assert dash.post("/dashboard/webhooks", {**HOOK, "description": ""}).status_code == 303
    keys_page = dash.get("/dashboard/keys")
    assert "whsec_" not in keys_page.text and "new-key-value" not in keys_page.text
    assert "whsec_" not in dash.get("/dashboard/webhooks").text
    [event, _] = audit_events(client, sk, "webhook_endpoint.created")[::-1]
    assert event["actor"] == {"type": "key", "id": key_id_of(client, sk)}
    assert event["target"] == {"type": "webhook_endpoint", "id": endpoint["id"]}
    assert event["details"] == {"url": HOOK["url"], "events": HOOK["events"]}
    assert "whsec_" not in str(event)


def test_a_refused_webhook_url_shows_the_api_message_and_stores_nothing(dash, client, org):
    sk = org["keys"]["live"]["secretKey"]
    dash.sign_in(sk)
    for url in ("http://example.com/hooks", "https://127.0.0.1/hooks"):
        api = client.post("/api/v1/webhook-endpoints", json={"url": url, "events": ["session.created"]},
                          headers=secret(sk))
        assert api.status_code == 400
        [message] = api.json["details"]["url"]
        refused = dash.post("/dashboard/webhooks", {"url": url, "events": ["session.created"]})
        assert refused.status_code == 400
        assert f'<p class="field-error" id="endpoint-url-error">{message}</p>' in refused.text
        assert 'aria-invalid="true"' in refused.text and "The endpoint was not added" in refused.text
        assert f'value="{url}"' in refused.text  # the form keeps what was typed
        assert 'value="session.created" checked' in refused.text
    assert message == "The host resolves to a loopback, private, link-local or reserved address."
    # marshmallow's messages, from the API's own schema.
    api = client.post("/api/v1/webhook-endpoints", json={"url": "https://example.com", "events": [],
                                                        "description": "x" * 501}, headers=secret(sk))
    assert api.status_code == 400
    refused = dash.post("/dashboard/webhooks", {"url": "https://example.com", "description": "x" * 501})
    assert refused.status_code == 400
    assert f'id="endpoint-events-error">{api.json["details"]["events"][0]}</p>' in refused.text
    assert f'id="endpoint-description-error">{api.json["details"]["description"][0]}</p>' in refused.text
    forged = dash.post("/dashboard/webhooks", {"url": "https://example.com", "events": ["nope"]})
    assert forged.status_code == 400 and 'id="endpoint-events-error">Must be one of: session.created' in forged.text
    assert client.get("/api/v1/webhook-endpoints", headers=secret(sk)).json["data"] == []
    assert audit_events(client, sk, "webhook_endpoint.created") == []


def test_rotate_a_webhook_secret_with_an_expiry(app, dash, client, org):
    sk = org["keys"]["test"]["secretKey"]
    dash.sign_in(sk)
    assert dash.post("/dashboard/webhooks", HOOK).status_code == 303
    first = NEW_SECRET.search(dash.get("/dashboard/webhooks").text).group(1)
    [endpoint] = client.get("/api/v1/webhook-endpoints", headers=secret(sk)).json["data"]
    bad = dash.post(f"/dashboard/webhooks/{endpoint['id']}/rotate-secret", {"expiresIn": "604801"})
    assert bad.status_code == 400
    assert (f'id="rotate-{endpoint["id"]}-error">Must be greater than or equal to 0 and less than or equal to '
            "604800.</p>") in bad.text
    rotated = dash.post(f"/dashboard/webhooks/{endpoint['id']}/rotate-secret", {"expiresIn": "3600"})
    assert rotated.status_code == 303 and rotated.headers["Location"] == "/dashboard/webhooks"
    page = dash.get("/dashboard/webhooks")
    second = NEW_SECRET.search(page.text).group(1)
    assert second != first and "Rotated the signing secret of http://127.0.0.1:9/usher." in page.text
    assert re.search(r"The old secret signs too until \d{4}-\d\d-\d\d \d\d:\d\d UTC\.", page.text)
    assert second not in dash.get("/dashboard/webhooks").text
    # Both secrets sign for the hour, then the new one alone.
    row = endpoint_row(app, endpoint["id"])
    now = app.extensions["usher"].clock()
    assert signing_secrets(row, APP_SECRET, now) == [second, first]
    assert signing_secrets(row, APP_SECRET, now + timedelta(seconds=3601)) == [second]
    assert "signs too until" in dash.get(f"/dashboard/webhooks/{endpoint['id']}").text
    [event] = audit_events(client, sk, "webhook_endpoint.secret_rotated")
    assert event["actor"] == {"type": "key", "id": key_id_of(client, sk)}
    assert event["details"] == {"expiresIn": 3600} and event["target"]["id"] == endpoint["id"]


def test_a_created_endpoint_and_its_shown_once_secret_are_one_transaction(app, dash, client, org):
    """As for a key: an endpoint is created only with its signing secret held for the next page.
    A database failure while holding the secret leaves no endpoint, no subscription and no audit
    event; an endpoint that commits always has its secret, shown exactly once."""
    sk = org["keys"]["test"]["secretKey"]
    dash.sign_in(sk)
    with failing_reveal(app):
        assert dash.post("/dashboard/webhooks", HOOK).status_code >= 500
    assert client.get("/api/v1/webhook-endpoints", headers=secret(sk)).json["data"] == []
    assert audit_events(client, sk, "webhook_endpoint.created") == []
    with app.extensions["usher"].db.transaction() as session:
        mine = org["organizationId"]
        assert session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.organization_id == mine)).all() == []
        assert session.scalars(select(WebhookSubscription)
                               .where(WebhookSubscription.organization_id == mine)).all() == []
    assert held_reveals(app, key_id_of(client, sk)) == []
    page = dash.get("/dashboard/webhooks")
    assert page.status_code == 200 and "No endpoint yet." in page.text and "new-secret-value" not in page.text

    with Statements(app) as statements:
        created = dash.post("/dashboard/webhooks", HOOK)
    assert created.status_code == 303 and created.headers["Location"] == "/dashboard/webhooks"
    assert len(statements.begins) == 1, statements.seen  # the endpoint, its audit event and the reveal
    value = NEW_SECRET.search(dash.get("/dashboard/webhooks").text).group(1)
    [endpoint] = client.get("/api/v1/webhook-endpoints", headers=secret(sk)).json["data"]
    now = app.extensions["usher"].clock()
    assert signing_secrets(endpoint_row(app, endpoint["id"]), APP_SECRET, now) == [value]
    assert "new-secret-value" not in dash.get("/dashboard/webhooks").text
    assert len(audit_events(client, sk, "webhook_endpoint.created")) == 1


def test_a_rotated_secret_and_its_shown_once_value_are_one_transaction(app, dash, client, org):
    """A rotation commits only with its new secret held for the next page: a failure while
    holding it leaves the old secret the only one (no previous secret, no audit event)."""
    sk = org["keys"]["test"]["secretKey"]
    dash.sign_in(sk)
    assert dash.post("/dashboard/webhooks", HOOK).status_code == 303
    first = NEW_SECRET.search(dash.get("/dashboard/webhooks").text).group(1)
    [endpoint] = client.get("/api/v1/webhook-endpoints", headers=secret(sk)).json["data"]
    rotate = f"/dashboard/webhooks/{endpoint['id']}/rotate-secret"
    with failing_reveal(app):
        assert dash.post(rotate, {"expiresIn": "3600"}).status_code >= 500
    row = endpoint_row(app, endpoint["id"])
    now = app.extensions["usher"].clock()
    assert signing_secrets(row, APP_SECRET, now + timedelta(hours=2)) == [first]
    assert row.previous_secret_sealed is None and row.previous_expires_at is None
    assert audit_events(client, sk, "webhook_endpoint.secret_rotated") == []
    assert held_reveals(app, key_id_of(client, sk)) == []
    assert "new-secret-value" not in dash.get("/dashboard/webhooks").text

    with Statements(app) as statements:
        rotated = dash.post(rotate, {"expiresIn": "3600"})
    assert rotated.status_code == 303 and rotated.headers["Location"] == "/dashboard/webhooks"
    assert len(statements.begins) == 1, statements.seen  # the rotation, its audit event and the reveal
    second = NEW_SECRET.search(dash.get("/dashboard/webhooks").text).group(1)
    assert second != first and "new-secret-value" not in dash.get("/dashboard/webhooks").text
    now = app.extensions["usher"].clock()
    assert signing_secrets(endpoint_row(app, endpoint["id"]), APP_SECRET, now) == [second, first]
    assert len(audit_events(client, sk, "webhook_endpoint.secret_rotated")) == 1


def test_delete_a_webhook_endpoint(dash, client, org, actions):
    sk = org["keys"]["test"]["secretKey"]
    other = actions.create_org("Other")["keys"]["test"]["secretKey"]
    foreign = client.post("/api/v1/webhook-endpoints", json={"url": HOOK["url"], "events": ["session.created"]},
                          headers=secret(other)).json
    dash.sign_in(sk)
    assert dash.post("/dashboard/webhooks", HOOK).status_code == 303
    [endpoint] = client.get("/api/v1/webhook-endpoints", headers=secret(sk)).json["data"]
    deleted = dash.post(f"/dashboard/webhooks/{endpoint['id']}/delete", CONFIRM)
    assert deleted.status_code == 303 and deleted.headers["Location"] == "/dashboard/webhooks"
    page = dash.get("/dashboard/webhooks")
    assert "Deleted the endpoint for http://127.0.0.1:9/usher." in page.text and "No endpoint yet." in page.text
    assert client.get("/api/v1/webhook-endpoints", headers=secret(sk)).json["data"] == []
    [event] = audit_events(client, sk, "webhook_endpoint.deleted")
    assert event["actor"] == {"type": "key", "id": key_id_of(client, sk)}
    assert event["details"] == {"url": HOOK["url"]} and event["target"]["id"] == endpoint["id"]
    # Gone is gone; another tenant's endpoint is not found and stays.
    assert dash.post(f"/dashboard/webhooks/{endpoint['id']}/delete").status_code == 404
    assert dash.post(f"/dashboard/webhooks/{foreign['id']}/delete").status_code == 404
    assert dash.post(f"/dashboard/webhooks/{foreign['id']}/rotate-secret", {"expiresIn": "0"}).status_code == 404
    assert dash.get(f"/dashboard/webhooks/{foreign['id']}").status_code == 404
    assert client.get(f"/api/v1/webhook-endpoints/{foreign['id']}", headers=secret(other)).status_code == 200


def test_an_endpoints_deliveries_are_listed(app, dash, client, org, tenant):
    sk = org["keys"]["test"]["secretKey"]
    dash.sign_in(sk)
    assert dash.post("/dashboard/webhooks", {**HOOK, "events": ["session.created"]}).status_code == 303
    [endpoint] = client.get("/api/v1/webhook-endpoints", headers=secret(sk)).json["data"]
    detail = dash.get(f"/dashboard/webhooks/{endpoint['id']}")
    assert detail.status_code == 200 and "No delivery yet." in detail.text
    tenant.guest()
    tenant.guest()  # two session.created events (the test client never closes a response: nothing is sent)
    # As the worker records a delivery that failed for good, beside one still pending.
    with app.extensions["usher"].db.transaction() as session:
        first = session.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint["id"])
                                .order_by(WebhookDelivery.created_at, WebhookDelivery.event_id)).first()
        session.execute(update(WebhookDelivery).where(WebhookDelivery.event_id == first.event_id)
                        .values(status="failed", attempts=7, last_response_status=503, next_attempt_at=None,
                                last_error="HTTP 503 from the receiver"))
    api = client.get(f"/api/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=secret(sk)).json["data"]
    assert [(d["eventType"], d["status"], d["attempts"], d["lastResponseStatus"]) for d in api] == [
        ("session.created", "pending", 0, None), ("session.created", "failed", 7, 503)]
    page = dash.get(f"/dashboard/webhooks/{endpoint['id']}")
    rows = page.text[page.text.index("<tbody>"):page.text.index("</tbody>")].split("<tr>")[1:]
    assert len(rows) == 2
    pending, failed = rows
    assert api[0]["id"] in pending and '<span class="tag status-pending">pending</span>' in pending
    assert '<td data-label="Attempts">0</td>' in pending and '<td data-label="Last response">—</td>' in pending
    assert api[0]["nextAttemptAt"][:16].replace("T", " ") + " UTC" in pending
    assert api[1]["id"] in failed and '<span class="tag status-failed">failed</span>' in failed
    assert '<td data-label="Attempts">7</td>' in failed
    # A failed delivery says why (the deliveries API's lastError).
    assert '<td data-label="Last response">503<div class="hint">HTTP 503 from the receiver</div></td>' in failed
    assert '<td data-label="Next attempt">—</td>' in failed
    assert f'href="/dashboard/webhooks/{endpoint["id"]}"' in dash.get("/dashboard/webhooks").text


def test_webhooks_need_the_webhooks_write_scope(dash, client, org):
    sk = org["keys"]["test"]["secretKey"]
    operator = restricted_key(client, sk, "keys:write", "audit:read")
    dash.sign_in(operator["key"])
    page = dash.get("/dashboard/keys")
    nav = page.text[page.text.index("<nav"):page.text.index("</nav>")]
    assert ">API keys</a>" in nav and ">Audit log</a>" in nav and "Webhooks" not in nav
    refused = dash.get("/dashboard/webhooks")
    assert refused.status_code == 403 and "insufficient_scope" in refused.text
    assert "Needed: webhooks:write." in refused.text
    assert dash.post("/dashboard/webhooks", HOOK).status_code == 403
    assert client.get("/api/v1/webhook-endpoints", headers=secret(sk)).json["data"] == []
    # With the scope, a restricted key manages endpoints, and is the actor of its changes.
    writer = restricted_key(client, sk, "webhooks:write")
    other = Dashboard(dash.client.application.test_client())
    other.get("/dashboard/sign-in")
    signed_in = other.post("/dashboard/sign-in", {"key": writer["key"]})
    assert signed_in.headers["Location"] == "/dashboard/webhooks"
    nav = other.get("/dashboard/webhooks").text
    assert ">Webhooks</a>" in nav and ">API keys</a>" not in nav
    assert other.post("/dashboard/webhooks", HOOK).status_code == 303
    [event] = audit_events(client, sk, "webhook_endpoint.created")
    assert event["actor"] == {"type": "key", "id": writer["id"]}


# -- sign-in rate limit ------------------------------------------------------------------------
def test_failed_sign_ins_are_limited_per_client_address(app_config, org):
    limited = create_app({**app_config, "DASHBOARD_SIGN_IN_RATE_LIMIT": "3 per hour"})
    try:
        key = org["keys"]["test"]["secretKey"]
        attacker = Dashboard(limited.test_client())
        attacker.client.environ_base["REMOTE_ADDR"] = "203.0.113.7"
        attacker.get("/dashboard/sign-in")
        for _ in range(3):
            wrong = attacker.post("/dashboard/sign-in", {"key": "sk_test_" + "A" * 40})
            assert wrong.status_code == 400 and "Authentication required" in wrong.text
        refused = attacker.post("/dashboard/sign-in", {"key": key})  # even the right key, now
        assert refused.status_code == 429
        retry_after = int(refused.headers["Retry-After"])
        assert 0 < retry_after <= 3600  # within the hour (the sliding window's own estimate)
        wait = f"{retry_after} seconds" if retry_after < 120 else f"{math.ceil(retry_after / 60)} minutes"
        assert ('<p class="field-error" id="key-error">Too many requests. Please try again later. Too many failed '
                f"sign-ins from this address: try again in {wait}.</p>") in refused.text
        assert 'aria-invalid="true"' in refused.text and refused.headers["Cache-Control"] == "no-store"
        assert signed_out(attacker.client.get("/dashboard/keys"))
        # Another address is not held back; sign-ins that work spend nothing.
        merchant = Dashboard(limited.test_client())
        merchant.client.environ_base["REMOTE_ADDR"] = "198.51.100.20"
        for _ in range(4):
            merchant.sign_in(key)
        # Once the window has passed (here: the budget cleared), the address signs in again.
        limits = limited.extensions["usher"].limits
        limits.clear("dashboard_sign_in_failures", "3 per hour", "-", "dashboard", "203.0.113.7")
        attacker.sign_in(key)
    finally:
        limited.extensions["usher"].db.dispose()


def test_the_dashboard_runs_no_query_of_its_own():
    """Each page calls the service the admin API calls: no module of the dashboard imports
    SQLAlchemy (a query there would be a rule the API does not share)."""
    package = Path(__file__).resolve().parent.parent / "app" / "dashboard"
    modules = sorted(package.glob("*.py"))
    assert {m.stem for m in modules} >= {"common", "auth", "keys", "settings", "consumers", "webhooks"}
    for module in modules:
        tree = ast.parse(module.read_text())
        imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        imported += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        assert not [name for name in imported if name.split(".")[0] == "sqlalchemy"], module.name
