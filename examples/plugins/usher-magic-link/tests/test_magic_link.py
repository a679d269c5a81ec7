"""The magic link flow through HTTP: request, the link in the test outbox, verify, the guest
upgrade, single use, the 15 minutes, the redirect check and the errors."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, text

SHOP = "https://shop.example.com"  # allowed by the `tenant` fixture

LINK = re.compile(re.escape(SHOP) + r"/signed-in#usher_magic=(ml_[A-Za-z0-9_-]{43})")


def pk_headers(pk, bearer=None):
    headers = {"X-Publishable-Key": pk}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    return headers


def request_link(client, pk, email):
    return client.post("/api/v1/auth/magic-link/request", headers=pk_headers(pk),
                       json={"email": email, "redirectUrl": f"{SHOP}/signed-in"})


def outbox(client, sk):
    response = client.get("/api/v1/test/otp-messages", headers={"Authorization": f"Bearer {sk}"})
    assert response.status_code == 200
    return response.json["data"]


def emailed_token(client, sk, email):
    bodies = [message["body"] for message in outbox(client, sk) if message["to"] == email]
    assert bodies, f"no message to {email}"
    return LINK.search(bodies[0]).group(1)


def verify(client, pk, token, bearer=None):
    return client.post("/api/v1/auth/magic-link/verify", headers=pk_headers(pk, bearer), json={"token": token})


def stored(app):
    engine = create_engine(app.extensions["usher"].settings.database_url)
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(text("SELECT * FROM magic_link_tokens"))]
    finally:
        engine.dispose()


def test_a_link_is_emailed_to_the_outbox_and_signs_in_once(app, client, tenant):
    pk, sk = tenant
    response = request_link(client, pk, "Ann@Example.com")
    assert response.status_code == 202, response.json
    assert response.json["sent"] is True
    expires = datetime.fromisoformat(response.json["expiresAt"].replace("Z", "+00:00"))
    assert timedelta(minutes=14) < expires - datetime.now(UTC) <= timedelta(minutes=15)
    message = outbox(client, sk)[0]
    assert message["to"] == "ann@example.com" and message["channel"] == "email"
    token = emailed_token(client, sk, "ann@example.com")
    assert token not in str(stored(app))  # only its keyed hash is kept

    signed_in = verify(client, pk, token)
    assert signed_in.status_code == 200, signed_in.json
    session = signed_in.json["session"]
    assert session["type"] == "magic_link" and session["consumerId"].startswith("cons_")
    assert "guestId" not in session and signed_in.json["accessToken"] and signed_in.json["refreshToken"]
    found = client.get(f"/api/v1/consumers/{session['consumerId']}", headers={"Authorization": f"Bearer {sk}"})
    assert found.status_code == 200 and found.json["email"] == "ann@example.com"

    again = verify(client, pk, token)
    assert again.status_code == 401
    assert {k: v for k, v in again.json.items() if k != "requestId"} == {
        "error": "magic_link_invalid", "message": "This sign-in link is not valid."}

    # The same email signs in as the same consumer.
    request_link(client, pk, "ann@example.com")
    second = next(m for m in outbox(client, sk) if m["to"] == "ann@example.com")
    other = verify(client, pk, LINK.search(second["body"]).group(1))
    assert other.json["session"]["consumerId"] == session["consumerId"]


def test_a_guest_is_upgraded_like_otp(app, client, tenant):
    pk, sk = tenant
    guest = client.post("/api/v1/auth/guest", headers=pk_headers(pk)).json
    request_link(client, pk, "guest-upgrade@example.com")
    token = emailed_token(client, sk, "guest-upgrade@example.com")
    upgraded = verify(client, pk, token, bearer=guest["accessToken"])
    assert upgraded.status_code == 200, upgraded.json
    assert upgraded.json["session"]["type"] == "magic_link"
    assert upgraded.json["session"]["guestId"] == guest["session"]["consumerId"]
    # The guest's session ended: its refresh token no longer works.
    refreshed = client.post("/api/v1/auth/refresh", headers=pk_headers(pk),
                            json={"refreshToken": guest["refreshToken"]})
    assert refreshed.status_code == 401


def test_a_failed_upgrade_does_not_spend_the_token(app, client, tenant):
    pk, sk = tenant
    request_link(client, pk, "keeps@example.com")
    token = emailed_token(client, sk, "keeps@example.com")
    guest = client.post("/api/v1/auth/guest", headers=pk_headers(pk)).json
    ended = client.post("/api/v1/auth/logout", headers=pk_headers(pk, guest["accessToken"]), json={})
    assert ended.status_code == 204
    # The guest's session is found ended inside the sign-in's transaction, after the token was spent:
    refused = verify(client, pk, token, bearer=guest["accessToken"])
    assert refused.status_code == 401 and refused.json["error"] == "Authentication required"
    assert [row["consumed_at"] for row in stored(app) if row["email"] == "keeps@example.com"] == [None]
    assert verify(client, pk, token).status_code == 200  # rolled back with it


def test_a_link_expires_after_15_minutes(app, client, tenant):
    pk, sk = tenant
    request_link(client, pk, "late@example.com")
    token = emailed_token(client, sk, "late@example.com")
    clock = app.extensions["usher"].clock
    clock.advance(15 * 60 + 1)
    try:
        late = verify(client, pk, token)
    finally:
        clock.advance(-(15 * 60 + 1))
    assert late.status_code == 401
    assert late.json["error"] == "magic_link_expired"
    assert late.headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_and_foreign_tokens_are_invalid(app, client, tenant):
    pk, sk = tenant
    request_link(client, pk, "mine@example.com")
    token = emailed_token(client, sk, "mine@example.com")
    result = app.test_cli_runner().invoke(args=["org", "create", "--name", "Other", "--json"])
    other_pk = json.loads(result.stdout)["keys"]["test"]["publishableKey"]
    for key, presented in ((pk, "ml_" + "A" * 43), (other_pk, token)):
        response = verify(client, key, presented)
        assert response.status_code == 401 and response.json["error"] == "magic_link_invalid"
    assert verify(client, pk, token).status_code == 200  # untouched by the foreign try


def test_the_redirect_must_be_an_allowed_origin(app, client, tenant):
    pk, sk = tenant
    before = len(stored(app))
    for url in ("https://evil.example.com/x", "javascript:alert(1)", f"{SHOP}/x#frag", "not a url"):
        response = client.post("/api/v1/auth/magic-link/request", headers=pk_headers(pk),
                               json={"email": "nowhere@example.com", "redirectUrl": url})
        assert response.status_code == 400, url
        assert response.json["error"] == "validation_error" and "redirectUrl" in response.json["details"]
    bad_email = request_link(client, pk, "not-an-email")
    assert bad_email.status_code == 400 and bad_email.json["error"] == "invalid_email"
    assert [m for m in outbox(client, sk) if m["to"] == "nowhere@example.com"] == []
    assert len(stored(app)) == before  # nothing issued


def test_concurrent_uses_of_one_token_sign_in_once(app, tenant):
    pk, sk = tenant
    client = app.test_client()
    request_link(client, pk, "race@example.com")
    token = emailed_token(client, sk, "race@example.com")
    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(lambda _: verify(app.test_client(), pk, token).status_code, range(4)))
    assert statuses == [200, 401, 401, 401]


def test_its_setting_is_validated_stored_per_mode_and_used(app, client, tenant):
    pk, sk = tenant
    auth = {"Authorization": f"Bearer {sk}"}
    assert client.get("/api/v1/settings", headers=auth).json["plugins"] == {"magicLinkRequestsPerHour": 5}
    for bad in ({"magicLinkRequestsPerHour": 0}, {"magicLinkRequestsPerHour": "many"}, {"otherPlugin": 1}):
        refused = client.patch("/api/v1/settings", json={"plugins": bad}, headers=auth)
        assert refused.status_code == 400 and refused.json["error"] == "validation_error"
        assert list(refused.json["details"]["plugins"]) == list(bad)
    changed = client.patch("/api/v1/settings", json={"plugins": {"magicLinkRequestsPerHour": 1}}, headers=auth)
    assert changed.status_code == 200 and changed.json["plugins"] == {"magicLinkRequestsPerHour": 1}
    assert client.get("/api/v1/settings", headers=auth).json["plugins"] == {"magicLinkRequestsPerHour": 1}
    assert request_link(client, pk, "budget@example.com").status_code == 202
    spent = request_link(client, pk, "budget@example.com")
    assert spent.status_code == 429 and spent.json["error"] == "rate_limited"
    assert len([m for m in outbox(client, sk) if m["to"] == "budget@example.com"]) == 1
