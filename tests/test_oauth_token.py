"""`POST /oauth/token`: Authlib's AuthorizationServer running Usher's own refresh and exchange
grants for public clients (`client_id` = publishable key), in RFC 6749 §5.1/§5.2 form."""

from __future__ import annotations

import base64
import hashlib

import jwt
import pytest
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from app import create_app
from tests.helpers import TenantActions, consumer, publishable, secret
from tests.live import http

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
EXCHANGE_CODE = "urn:usher:params:oauth:token-type:exchange-code"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


def exchange_form(pk: str, code: str, **extra) -> dict:
    return {"grant_type": TOKEN_EXCHANGE, "subject_token": code, "subject_token_type": EXCHANGE_CODE,
            "client_id": pk, **extra}


def mint(tenant: TenantActions, subject: str = "customer-1", **extra) -> str:
    response = tenant.client.post("/api/v1/auth/external/authorize", headers=secret(tenant.sk), json={
        "provider": "shop", "issuer": "https://shop.test", "subject": subject, **extra})
    assert response.status_code == 201, response.json
    return response.json["exchangeCode"]


def test_authlib_client_refreshes_through_the_token_endpoint(live_server, actions):
    keys = actions.create_org()["keys"]["test"]
    guest = http("POST", live_server.url + "/api/v1/auth/guest", publishable(keys["publishableKey"])).body
    token_url = live_server.url + "/oauth/token"
    with OAuth2Session(client_id=keys["publishableKey"], token_endpoint_auth_method="none",
                       token={"access_token": guest["accessToken"], "refresh_token": guest["refreshToken"],
                              "token_type": "Bearer"}) as session:
        token = session.refresh_token(token_url)
        assert token["token_type"] == "Bearer" and token["expires_in"] == 3600
        assert set(token) >= {"access_token", "refresh_token", "expires_in", "token_type", "expires_at"}
        assert "issued_token_type" not in token
        claims = jwt.decode(token["access_token"], options={"verify_signature": False})
        assert claims["sessionId"] == guest["session"]["sessionId"] and claims["aud"].endswith("/test")
        status = http("GET", f"{live_server.url}/api/v1/consumers/{claims['consumerId']}", secret(keys["secretKey"]))
        assert status.status == 200  # the same consumer
        # A racing holder of the predecessor, inside the grace window: the same pair again.
        again = session.refresh_token(token_url, refresh_token=guest["refreshToken"])
        assert (again["access_token"], again["refresh_token"]) == (token["access_token"], token["refresh_token"])
        # The pair works on the JSON API, and the JSON refresh accepts the new refresh token.
        refreshed = http("POST", live_server.url + "/api/v1/auth/refresh", publishable(keys["publishableKey"]),
                         {"refreshToken": token["refresh_token"]})
        assert refreshed.status == 200
        with pytest.raises(OAuthError) as foreign:
            session.refresh_token(token_url, refresh_token="eyJhbGciOiJub25lIn0.e30.")
        assert foreign.value.error == "invalid_grant"


def test_reuse_after_the_grace_window_is_invalid_grant_and_revokes_the_session(app, client, tenant):
    guest = tenant.guest()
    form = {"grant_type": "refresh_token", "refresh_token": guest["refreshToken"], "client_id": tenant.pk}
    first = client.post("/oauth/token", data=form)
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-store"
    clock = app.extensions["usher"].clock
    clock.advance(app.extensions["usher"].settings.refresh_grace_seconds + 1)
    try:
        reused = client.post("/oauth/token", data=form)
        assert reused.status_code == 400
        assert reused.json == {"error": "invalid_grant",
                               "error_description": "This refresh token was already used; the session has been "
                                                    "revoked."}
        queue = tenant.queue()
        assert client.get(f"/api/v1/queues/{queue['id']}/status",
                          headers=consumer(tenant.pk, first.json["access_token"])).status_code == 401
        assert tenant.refresh(first.json["refresh_token"]).json["error"] == "refresh_token_invalid"
    finally:
        clock.advance(-clock.offset.total_seconds())


def test_foreign_and_malformed_refresh_requests(client, tenant, org, actions):
    other = TenantActions(client, actions.create_org("Other")["keys"]["test"])
    live = TenantActions(client, org["keys"]["live"])
    guest = tenant.guest()
    for foreign in (other.guest()["refreshToken"], live.guest()["refreshToken"], guest["accessToken"]):
        response = client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": foreign,
                                                     "client_id": tenant.pk})
        assert response.status_code == 400 and response.json["error"] == "invalid_grant"
    cases = [
        ({"grant_type": "refresh_token", "refresh_token": guest["refreshToken"], "client_id": "pk_test_" + "A" * 32},
         "invalid_client"),
        ({"grant_type": "refresh_token", "refresh_token": guest["refreshToken"], "client_id": tenant.sk},
         "invalid_client"),
        ({"grant_type": "refresh_token", "refresh_token": guest["refreshToken"]}, "invalid_client"),
        ({"grant_type": "refresh_token", "refresh_token": guest["refreshToken"],  # PostgreSQL refuses NUL
          "client_id": "pk_test_" + "A" * 31 + "\x00"}, "invalid_client"),
        ({"grant_type": "refresh_token", "client_id": tenant.pk}, "invalid_request"),
        ({"grant_type": "password", "username": "a", "password": "b", "client_id": tenant.pk},
         "unsupported_grant_type"),
        ({"grant_type": "authorization_code", "code": "x", "client_id": tenant.pk}, "unsupported_grant_type"),
    ]
    for form, error in cases:
        response = client.post("/oauth/token", data=form)
        assert response.status_code == 400, (form, response.json)
        assert response.json["error"] == error, (form, response.json)
    basic = base64.b64encode(b"org_\x00:" + tenant.sk.encode()).decode()
    introspect = client.post("/oauth/introspect", data={"token": guest["accessToken"]},
                             headers={"Authorization": f"Basic {basic}"})
    assert introspect.status_code == 401 and introspect.json["error"] == "invalid_client"
    # None of that consumed the refresh token.
    assert tenant.refresh(guest["refreshToken"]).status_code == 200


def test_token_exchange_by_form_post(client, tenant, actions):
    code = mint(tenant)
    response = client.post("/oauth/token", data=exchange_form(tenant.pk, code))
    assert response.status_code == 200, response.json
    body = response.json
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "issued_token_type"}
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE and body["token_type"] == "Bearer"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["consumerId"].startswith("cons_") and claims["tokenType"] == "access"
    queue = tenant.queue()
    assert client.post(f"/api/v1/queues/{queue['id']}/enter",
                       headers=consumer(tenant.pk, body["access_token"])).status_code == 200
    # The same consumer as through the JSON endpoint for the same (provider, issuer, subject).
    json_session = client.post("/api/v1/auth/external/exchange", headers=publishable(tenant.pk),
                               json={"exchangeCode": mint(tenant)}).json
    assert json_session["session"]["consumerId"] == claims["consumerId"]

    # Replay: invalid_grant, and the session the code made is ended (as on the JSON endpoint).
    replay = client.post("/oauth/token", data=exchange_form(tenant.pk, code))
    assert replay.status_code == 400 and replay.json["error"] == "invalid_grant"
    assert client.post(f"/api/v1/queues/{queue['id']}/leave",
                       headers=consumer(tenant.pk, body["access_token"])).status_code == 401

    # Another organization's code: invalid_grant, and the code is left for its owner.
    other = TenantActions(client, actions.create_org("Other")["keys"]["test"])
    foreign = mint(other)
    refused = client.post("/oauth/token", data=exchange_form(tenant.pk, foreign))
    assert refused.status_code == 400 and refused.json["error"] == "invalid_grant"
    assert client.post("/oauth/token", data=exchange_form(other.pk, foreign)).status_code == 200


def test_token_exchange_checks_pkce_and_its_parameters(client, tenant):
    verifier = "v" * 43
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    code = mint(tenant, codeChallenge=challenge)
    for bad in ({}, {"code_verifier": "w" * 43}):
        response = client.post("/oauth/token", data=exchange_form(tenant.pk, code, **bad))
        assert response.status_code == 400 and response.json["error"] == "invalid_grant"
    for extra, error in (({"subject_token_type": ACCESS_TOKEN_TYPE}, "invalid_request"),
                         ({"requested_token_type": "urn:ietf:params:oauth:token-type:id_token"}, "invalid_request"),
                         ({"actor_token": "x"}, "invalid_request"),
                         ({"audience": "https://api.example"}, "invalid_target"),
                         ({"code_verifier": "short"}, "invalid_request")):
        response = client.post("/oauth/token", data=exchange_form(tenant.pk, code, **extra))
        assert response.status_code == 400 and response.json["error"] == error, (extra, response.json)
    assert client.post("/oauth/token", data={"grant_type": TOKEN_EXCHANGE, "client_id": tenant.pk,
                                             "subject_token_type": EXCHANGE_CODE}).json["error"] == "invalid_request"
    ok = client.post("/oauth/token", data=exchange_form(tenant.pk, code, code_verifier=verifier))
    assert ok.status_code == 200, ok.json


def test_the_exchange_limit_is_shared_by_both_dialects(app_config):
    app = create_app({**app_config, "EXCHANGE_RATE_LIMIT": "2 per minute"})
    client = app.test_client()
    with app.extensions["usher"].db.transaction() as session:
        from app.services.orgs import create_organization

        org = create_organization(session, app_config["APP_SECRET"], "Limited")
    tenant = TenantActions(client, org["keys"]["test"])
    assert client.post("/api/v1/auth/external/exchange", headers=publishable(tenant.pk),
                       json={"exchangeCode": mint(tenant, "a")}).status_code == 200
    assert client.post("/oauth/token", data=exchange_form(tenant.pk, mint(tenant, "b"))).status_code == 200
    code = mint(tenant, "c")
    limited = client.post("/oauth/token", data=exchange_form(tenant.pk, code))
    assert limited.status_code == 429 and limited.json["error"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) > 0
    assert client.post("/api/v1/auth/external/exchange", headers=publishable(tenant.pk),
                       json={"exchangeCode": code}).status_code == 429  # and the code was not spent
    app.extensions["usher"].db.dispose()


def test_disabled_grants_are_not_offered(app_config):
    app = create_app({**app_config, "ENABLED_GRANTS": "guest,otp"})
    client = app.test_client()
    metadata = client.get("/.well-known/oauth-authorization-server").json
    assert metadata["grant_types_supported"] == []
    with app.extensions["usher"].db.transaction() as session:
        from app.services.orgs import create_organization

        org = create_organization(session, app_config["APP_SECRET"], "Disabled")
    pk = org["keys"]["test"]["publishableKey"]
    response = client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": pk})
    assert response.status_code == 400 and response.json["error"] == "unsupported_grant_type"
    app.extensions["usher"].db.dispose()


def test_plain_http_off_loopback_is_400_insecure_transport_on_every_oauth_endpoint(client, tenant):
    """RFC 6749 §1.6 / §3.2: TLS everywhere but on loopback (behind a proxy, only trusted hops'
    `X-Forwarded-Proto` counts). Answered in the RFC error shape, never a 500, and nothing done."""
    guest = tenant.guest()
    forms = {"/oauth/token": {"grant_type": "refresh_token", "refresh_token": guest["refreshToken"],
                              "client_id": tenant.pk},
             "/oauth/introspect": {"token": guest["accessToken"]},
             "/oauth/revoke": {"token": guest["refreshToken"]}}
    for path, form in forms.items():
        headers = {} if path == "/oauth/token" else secret(tenant.sk)
        reply = client.post(path, base_url="http://usher.example", data=form, headers=headers)
        assert reply.status_code == 400, (path, reply.get_data(as_text=True))
        assert reply.json["error"] == "insecure_transport", path
    refreshed = client.post("/api/v1/auth/refresh", json={"refreshToken": guest["refreshToken"]},
                            headers=publishable(tenant.pk))
    assert refreshed.status_code == 200, "neither rotated by the token endpoint nor revoked"
