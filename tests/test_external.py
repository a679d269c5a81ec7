"""External authentication (authorize → exchange) and the RFC 7662 / 7009 endpoints."""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.db import utcnow
from app.models import ExchangeCode
from tests.helpers import TenantActions, bearer, consumer, publishable, secret
from tests.live import http
from tests.test_sessions import race

SEED_AUTHORIZE = {"provider": "your-platform", "issuer": "https://your-domain.com", "subject": "user_123456",
                  "claims": {"email": "john@example.com", "name": "John Doe"}}
INVALID = {"error": "exchange_code_invalid", "message": "The exchange code is not valid."}
EXPIRED = {"error": "exchange_code_expired", "message": "The exchange code has expired."}


class External:
    def __init__(self, tenant: TenantActions):
        self.tenant, self.client = tenant, tenant.client

    def authorize(self, **body):
        return self.client.post("/api/v1/auth/external/authorize", json=body, headers=secret(self.tenant.sk))

    def code(self, **body) -> str:
        response = self.authorize(**{**SEED_AUTHORIZE, **body})
        assert response.status_code == 201, response.json
        return response.json["exchangeCode"]

    def exchange(self, code: str, headers=None, **extra):
        return self.client.post("/api/v1/auth/external/exchange", json={"exchangeCode": code, **extra},
                                headers={**publishable(self.tenant.pk), **(headers or {})})

    def introspect(self, token: str, headers=None):
        return self.client.post("/oauth/introspect", data={"token": token}, headers=headers or secret(self.tenant.sk))


@pytest.fixture
def ext(tenant) -> External:
    return External(tenant)


def test_the_seed_two_step_example_works_as_written(ext):
    authorized = ext.authorize(**SEED_AUTHORIZE)
    assert authorized.status_code == 201
    assert set(authorized.json) == {"exchangeCode", "expiresAt"}
    assert authorized.json["exchangeCode"].startswith("exc_") and len(authorized.json["exchangeCode"]) >= 26
    exchanged = ext.exchange(authorized.json["exchangeCode"])
    assert exchanged.status_code == 200
    assert exchanged.json["session"]["type"] == "external"
    assert exchanged.json["session"]["consumerId"].startswith("cons_")
    assert set(exchanged.json) == {"session", "accessToken", "refreshToken"}


def test_codes_carry_enough_randomness_and_are_stored_only_as_hashes(ext, app):
    code = ext.code()
    assert len(code) - len("exc_") >= 43  # 256 bits, base64url
    with app.extensions["usher"].db.sessionmaker() as session:
        stored = [row.code_hash for row in session.scalars(select(ExchangeCode))]
    assert code not in stored and code[4:] not in "".join(stored)


@pytest.mark.gunicorn
def test_single_use_under_ten_concurrent_exchanges_on_gunicorn(live_server, actions):
    keys = actions.create_org()["keys"]["test"]
    code = http("POST", live_server.url + "/api/v1/auth/external/authorize", secret(keys["secretKey"]),
                SEED_AUTHORIZE).body["exchangeCode"]
    replies = race(10, lambda: http("POST", live_server.url + "/api/v1/auth/external/exchange",
                                    publishable(keys["publishableKey"]), {"exchangeCode": code}))
    assert sorted(r.status for r in replies) == [200] + [401] * 9
    assert {r.body["error"] for r in replies if r.status == 401} == {"exchange_code_invalid"}


def test_replay_revokes_the_session_the_code_made(ext):
    code = ext.code()
    first = ext.exchange(code).json
    replay = ext.exchange(code)
    assert replay.status_code == 401 and replay.json == INVALID
    assert ext.tenant.refresh(first["refreshToken"]).json["error"] == "refresh_token_invalid"
    queue = ext.tenant.queue()
    assert ext.tenant.status(queue["id"], first["accessToken"]).json == {"error": "Authentication required"}


@pytest.fixture
def clock(app):
    """Move the auth server's clock; restored afterwards."""
    server = app.extensions["usher"].auth
    original = server.clock

    def move(seconds: float):
        server.clock = lambda: utcnow() + timedelta(seconds=seconds)

    yield move
    server.clock = original


def test_codes_expire_after_sixty_seconds(ext, clock):
    early, late = ext.code(subject="early"), ext.code(subject="late")
    clock(58)
    assert ext.exchange(early).status_code == 200
    clock(61)
    response = ext.exchange(late)
    assert response.status_code == 401 and response.json == EXPIRED


def test_codes_are_refused_across_organizations_and_modes_and_make_no_session(ext, org, actions, client):
    code = ext.code(subject="cross")
    other_org = External(TenantActions(client, actions.create_org("Other")["keys"]["test"]))
    live_mode = External(TenantActions(client, org["keys"]["live"]))
    for stranger in (other_org, live_mode):
        response = stranger.exchange(code)
        assert response.status_code == 401 and response.json == INVALID
    # Nothing was made for the strangers, and the rightful tenant can still use the code.
    assert client.get("/api/v1/consumers", headers=secret(other_org.tenant.sk)).json["data"] == []
    assert client.get("/api/v1/consumers", headers=secret(live_mode.tenant.sk)).json["data"] == []
    assert ext.exchange(code).status_code == 200


def test_identity_mapping_and_claims(ext, client):
    first = ext.exchange(ext.code()).json["session"]["consumerId"]
    again = ext.exchange(ext.code(claims={"email": "john@example.com", "name": "John D."})).json
    assert again["session"]["consumerId"] == first
    other_subject = ext.exchange(ext.code(subject="user_999")).json["session"]["consumerId"]
    other_issuer = ext.exchange(ext.code(issuer="https://other.example")).json["session"]["consumerId"]
    other_provider = ext.exchange(ext.code(provider="shopify")).json["session"]["consumerId"]
    assert len({first, other_subject, other_issuer, other_provider}) == 4
    shown = client.get(f"/api/v1/consumers/{first}", headers=secret(ext.tenant.sk)).json
    assert shown["externalIdentities"] == [{"provider": "your-platform", "issuer": "https://your-domain.com",
                                            "subject": "user_123456",
                                            "claims": {"email": "john@example.com", "name": "John D."}}]
    assert shown["email"] is None  # claims never set or merge the consumer's own email


def test_email_in_claims_never_merges_with_an_otp_consumer(ext, client):
    client.post("/api/v1/auth/otp/request", json={"email": "john@example.com"}, headers=publishable(ext.tenant.pk))
    body = client.get("/api/v1/test/otp-messages", headers=secret(ext.tenant.sk)).json["data"][0]["body"]
    code = next(word for word in body.split() if word.rstrip(".").isdigit()).rstrip(".")
    otp_consumer = client.post("/api/v1/auth/otp/verify", json={"email": "john@example.com", "code": code},
                               headers=publishable(ext.tenant.pk)).json["session"]["consumerId"]
    external_consumer = ext.exchange(ext.code()).json["session"]["consumerId"]
    assert external_consumer != otp_consumer


def _challenge() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def test_code_challenge_requires_the_matching_verifier_and_a_refusal_leaves_the_code_unused(ext):
    verifier, challenge = _challenge()
    code = ext.code(codeChallenge=challenge, codeChallengeMethod="S256")
    missing = ext.exchange(code)
    assert missing.status_code == 401 and missing.json["error"] == "exchange_code_invalid"
    wrong = ext.exchange(code, codeVerifier=_challenge()[0])
    assert wrong.status_code == 401 and wrong.json["error"] == "exchange_code_invalid"
    right = ext.exchange(code, codeVerifier=verifier)
    assert right.status_code == 200
    # Without a challenge, the flow is exactly the seed's (a verifier is not needed).
    assert ext.exchange(ext.code(subject="plain")).status_code == 200


@pytest.mark.parametrize("body, field", [
    ({**SEED_AUTHORIZE, "provider": ""}, "provider"),
    ({**SEED_AUTHORIZE, "provider": "x" * 65}, "provider"),
    ({**SEED_AUTHORIZE, "provider": "has space"}, "provider"),
    ({**SEED_AUTHORIZE, "issuer": "http://your-domain.com"}, "issuer"),
    ({**SEED_AUTHORIZE, "issuer": "ftp://your-domain.com"}, "issuer"),
    ({**SEED_AUTHORIZE, "issuer": "not a url"}, "issuer"),
    ({**SEED_AUTHORIZE, "issuer": "https://" + "a" * 2050}, "issuer"),
    ({**SEED_AUTHORIZE, "subject": ""}, "subject"),
    ({**SEED_AUTHORIZE, "subject": "x" * 256}, "subject"),
    ({**SEED_AUTHORIZE, "subject": "line\nbreak"}, "subject"),
    ({**SEED_AUTHORIZE, "subject": 123456}, "subject"),
    ({**SEED_AUTHORIZE, "claims": "email"}, "claims"),
    ({**SEED_AUTHORIZE, "claims": {"nested": {"a": 1}}}, "claims"),
    ({**SEED_AUTHORIZE, "claims": {"list": [1, 2]}}, "claims"),
    ({**SEED_AUTHORIZE, "claims": {f"k{i}": i for i in range(33)}}, "claims"),
    ({**SEED_AUTHORIZE, "claims": {"long": "x" * 1025}}, "claims"),
    ({**SEED_AUTHORIZE, "claims": {f"k{i}": "x" * 1000 for i in range(5)}}, "claims"),
    ({**SEED_AUTHORIZE, "codeChallenge": "short"}, "codeChallenge"),
    ({**SEED_AUTHORIZE, "codeChallengeMethod": "plain"}, "codeChallengeMethod"),
    ({"issuer": "https://your-domain.com", "subject": "s"}, "provider"),
    ({"provider": "p", "subject": "s"}, "issuer"),
    ({"provider": "p", "issuer": "https://your-domain.com"}, "subject"),
    ({**SEED_AUTHORIZE, "unknown": 1}, "unknown"),
])
def test_authorize_validation_errors_name_each_field(ext, body, field):
    response = ext.authorize(**body)
    assert response.status_code == 400
    assert response.json["error"] == "validation_error"
    assert field in response.json["details"]


def test_localhost_issuers_may_use_http(ext):
    for issuer in ("http://localhost:3000", "http://127.0.0.1/shop"):
        assert ext.authorize(**{**SEED_AUTHORIZE, "issuer": issuer}).status_code == 201


@pytest.mark.parametrize("body, field", [
    ({}, "exchangeCode"),
    ({"exchangeCode": ""}, "exchangeCode"),
    ({"exchangeCode": 5}, "exchangeCode"),
    ({"exchangeCode": "exc_x", "codeVerifier": "short"}, "codeVerifier"),
    ({"exchangeCode": "exc_x", "codeVerifier": "x" * 43 + " "}, "codeVerifier"),
])
def test_exchange_validation_errors_name_each_field(ext, body, field):
    response = ext.client.post("/api/v1/auth/external/exchange", json=body, headers=publishable(ext.tenant.pk))
    assert response.status_code == 400 and field in response.json["details"]


def test_authorize_needs_the_secret_key_and_exchange_the_publishable_key(ext):
    response = ext.client.post("/api/v1/auth/external/authorize", json=SEED_AUTHORIZE,
                               headers=publishable(ext.tenant.pk))
    assert response.status_code == 403 and response.json == {"error": "Secret key required"}
    response = ext.client.post("/api/v1/auth/external/exchange", json={"exchangeCode": "exc_x"})
    assert response.status_code == 401 and response.json == {"error": "Authentication required"}


def test_guest_upgrade_through_exchange(ext):
    tenant = ext.tenant
    queue = tenant.queue()
    guest = tenant.guest()
    tenant.client.post(f"/api/v1/queues/{queue['id']}/enter", headers=consumer(tenant.pk, guest["accessToken"]))
    upgraded = ext.exchange(ext.code(), headers=bearer(guest["accessToken"]))
    assert upgraded.status_code == 200
    assert upgraded.json["session"]["guestId"] == guest["session"]["consumerId"]
    assert tenant.status(queue["id"], upgraded.json["accessToken"]).json["position"] == 1
    assert tenant.refresh(guest["refreshToken"]).json["error"] == "refresh_token_invalid"


def test_introspection_of_live_logged_out_revoked_and_foreign_tokens(ext, org, actions, client):
    session = ext.exchange(ext.code()).json
    live = ext.introspect(session["accessToken"])
    assert live.status_code == 200 and live.json["active"] is True
    assert live.json["consumerId"] == session["session"]["consumerId"]
    assert live.json["sessionId"] == session["session"]["sessionId"]
    assert live.json["tokenType"] == "access" and live.json["mode"] == "test"
    basic = base64.b64encode(f"{org['organizationId']}:{ext.tenant.sk}".encode()).decode()
    assert ext.introspect(session["refreshToken"], {"Authorization": f"Basic {basic}"}).json["active"] is True

    assert client.post("/api/v1/auth/logout", headers=bearer(session["accessToken"])).status_code == 204
    assert ext.introspect(session["accessToken"]).json == {"active": False}
    assert ext.introspect(session["refreshToken"]).json == {"active": False}

    revoked = ext.exchange(ext.code(subject="to-revoke")).json
    response = client.post("/oauth/revoke", data={"token": revoked["refreshToken"],
                                                  "token_type_hint": "refresh_token"},
                           headers=secret(ext.tenant.sk))
    assert response.status_code == 200
    assert ext.introspect(revoked["accessToken"]).json == {"active": False}
    assert ext.tenant.refresh(revoked["refreshToken"]).json["error"] == "refresh_token_invalid"

    other = TenantActions(client, actions.create_org("Other")["keys"]["test"])
    foreign = other.guest()
    assert ext.introspect(foreign["accessToken"]).json == {"active": False}
    assert client.post("/oauth/revoke", data={"token": foreign["accessToken"]},
                       headers=secret(ext.tenant.sk)).status_code == 200
    assert ext.introspect(foreign["accessToken"], secret(other.sk)).json["active"] is True  # untouched
    live_mode = TenantActions(client, org["keys"]["live"]).guest()
    assert ext.introspect(live_mode["accessToken"]).json == {"active": False}
    for junk in ("junk", "a.b.c", "", "eyJhbGciOiJub25lIn0.e30."):
        assert ext.introspect(junk).json == {"active": False}
    missing = client.post("/oauth/introspect", data={}, headers=secret(ext.tenant.sk))
    assert missing.status_code == 400 and missing.json["error"] == "invalid_request"


def test_rotated_refresh_tokens_are_not_active(ext):
    guest = ext.tenant.guest()
    ext.tenant.refresh(guest["refreshToken"])
    assert ext.introspect(guest["refreshToken"]).json == {"active": False}


def test_publishable_keys_and_strangers_cannot_call_the_oauth_endpoints(ext, org):
    token = ext.tenant.guest()["accessToken"]
    basic_pk = base64.b64encode(f"{org['organizationId']}:{ext.tenant.pk}".encode()).decode()
    for path in ("/oauth/introspect", "/oauth/revoke"):
        for headers in (publishable(ext.tenant.pk), bearer(ext.tenant.pk), {"Authorization": f"Basic {basic_pk}"},
                        bearer("sk_test_" + "A" * 32), {}):
            response = ext.client.post(path, data={"token": token}, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.json["error"] == "invalid_client"
    assert ext.introspect(token).json["active"] is True  # nothing was revoked by the refused calls


def test_server_metadata_lists_the_endpoints(client, app):
    metadata = client.get("/.well-known/oauth-authorization-server").json
    issuer = app.extensions["usher"].settings.issuer
    assert metadata["issuer"] == issuer
    assert metadata["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
    assert metadata["introspection_endpoint"] == f"{issuer}/oauth/introspect"
    assert metadata["revocation_endpoint"] == f"{issuer}/oauth/revoke"
