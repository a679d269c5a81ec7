"""Tokens: shape, verification against the published JWKS, refusals, signing-key rotation."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.helpers import TenantActions, bearer, consumer, publishable, secret
from tests.live import http

AUTH_REQUIRED = {"error": "Authentication required"}
HEADER_KEYS = {"alg", "typ", "kid"}
ACCESS_CLAIMS = {"consumerId", "organizationId", "sessionId", "iat", "exp", "iss", "sub", "aud", "jti", "mode",
                 "tokenType"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict, claims: dict, signature: bytes = b"") -> str:
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)])


@pytest.mark.gunicorn
def test_guest_token_verifies_against_the_jwks_fetched_over_http(live_server, actions):
    org = actions.create_org()
    keys = org["keys"]["test"]
    http("PATCH", live_server.url + "/api/v1/settings", secret(keys["secretKey"]), {"accessTokenTtl": 900})
    reply = http("POST", live_server.url + "/api/v1/auth/guest", publishable(keys["publishableKey"]))
    assert reply.status == 201
    session = reply.body["session"]
    assert session["type"] == "guest"
    assert session["consumerId"] == session["guestId"] and session["consumerId"].startswith("guest_")
    assert session["sessionId"].startswith("sess_")

    jwks = http("GET", live_server.url + "/.well-known/jwks.json")
    assert "max-age" in jwks.headers["Cache-Control"]
    for jwk in jwks.body["keys"]:
        assert set(jwk) == {"kty", "crv", "x", "kid", "use", "alg"}  # never a private part ("d")
        assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("OKP", "Ed25519", "EdDSA")

    client = jwt.PyJWKClient(live_server.url + "/.well-known/jwks.json")
    audience = f"{org['organizationId']}/test"
    for token, token_type in ((reply.body["accessToken"], "access"), (reply.body["refreshToken"], "refresh")):
        header = jwt.get_unverified_header(token)
        assert set(header) == HEADER_KEYS and header["alg"] == "EdDSA" and header["typ"] == "JWT"
        if token_type == "access":
            key = client.get_signing_key_from_jwt(token)
            claims = jwt.decode(token, key.key, algorithms=["EdDSA"], issuer="http://usher.test", audience=audience)
            assert set(claims) == ACCESS_CLAIMS and claims["aud"] == audience
        else:  # signed with a key that is never published
            with pytest.raises(jwt.PyJWKClientError):
                client.get_signing_key_from_jwt(token)
            claims = jwt.decode(token, options={"verify_signature": False})
            assert set(claims) == ACCESS_CLAIMS - {"aud"}
        assert claims["tokenType"] == token_type
        assert claims["consumerId"] == claims["sub"] == session["consumerId"]
        assert claims["organizationId"] == org["organizationId"]
        assert claims["sessionId"] == session["sessionId"]
        assert claims["mode"] == "test"
        expected = 900 if token_type == "access" else 30 * 86400
        assert claims["exp"] - claims["iat"] == expected
    access_claims = jwt.decode(reply.body["accessToken"], options={"verify_signature": False})
    assert session["expiresAt"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(access_claims["exp"]))


@pytest.fixture
def protected(tenant):
    """A protected route (queue status) and a valid guest of the tenant."""
    queue = tenant.queue()
    guest = tenant.guest()
    path = f"/api/v1/queues/{queue['id']}/status"
    assert tenant.client.post(f"/api/v1/queues/{queue['id']}/enter",
                              headers=consumer(tenant.pk, guest["accessToken"])).status_code == 200
    assert tenant.client.get(path, headers=consumer(tenant.pk, guest["accessToken"])).status_code == 200
    return tenant, path, guest


def assert_refused(tenant, path, token):
    response = tenant.client.get(path, headers=consumer(tenant.pk, token))
    assert response.status_code == 401
    assert response.json == AUTH_REQUIRED


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_alg_none_is_refused(protected):
    tenant, path, guest = protected
    header = {"alg": "none", "typ": "JWT", "kid": jwt.get_unverified_header(guest["accessToken"])["kid"]}
    assert_refused(tenant, path, forge(header, _claims(guest["accessToken"])))
    assert_refused(tenant, path, forge({"alg": "none", "typ": "JWT"}, _claims(guest["accessToken"])))


def test_hs256_is_refused_even_keyed_with_our_public_key(protected, client):
    tenant, path, guest = protected
    kid = jwt.get_unverified_header(guest["accessToken"])["kid"]
    jwk = next(k for k in client.get("/.well-known/jwks.json").json["keys"] if k["kid"] == kid)
    public_raw = base64.urlsafe_b64decode(jwk["x"] + "==")
    import hashlib
    import hmac

    for key in (public_raw, jwk["x"].encode(), json.dumps(jwk).encode()):
        header = {"alg": "HS256", "typ": "JWT", "kid": kid}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(_claims(guest['accessToken'])).encode())}"
        signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
        assert_refused(tenant, path, f"{signing_input}.{b64(signature)}")


def test_tampered_payload_is_refused(protected):
    tenant, path, guest = protected
    head, _, sig = guest["accessToken"].split(".")
    claims = {**_claims(guest["accessToken"]), "consumerId": "guest_01HXYZ123456789ABCDEFGHJK"}
    assert_refused(tenant, path, f"{head}.{b64(json.dumps(claims).encode())}.{sig}")


def test_unknown_kid_is_refused(protected):
    tenant, path, guest = protected
    stranger = Ed25519PrivateKey.generate()
    token = jwt.encode(_claims(guest["accessToken"]), stranger, algorithm="EdDSA",
                       headers={"kid": "sig_01HXYZ123456789ABCDEFGHJK"})
    assert_refused(tenant, path, token)
    # Our kid, a stranger's signature.
    kid = jwt.get_unverified_header(guest["accessToken"])["kid"]
    assert_refused(tenant, path, jwt.encode(_claims(guest["accessToken"]), stranger, algorithm="EdDSA",
                                            headers={"kid": kid}))


def test_expired_access_token_is_refused(protected, app):
    tenant, path, guest = protected
    tokens = app.extensions["usher"].auth.tokens
    key = tokens.keyring.current()
    claims = _claims(guest["accessToken"])
    clock = app.extensions["usher"].clock
    now = int(clock.timestamp())
    leeway = app.extensions["usher"].settings.token_leeway_seconds
    clock.freeze(datetime.fromtimestamp(now, UTC))  # the margins below hold however slow the machine
    try:
        expired = {**claims, "iat": now - 7200, "exp": now - leeway - 5}
        token = jwt.encode(expired, key.private, algorithm="EdDSA", headers={"kid": key.kid})
        assert_refused(tenant, path, token)
        within_leeway = {**claims, "iat": now - 7200, "exp": now - leeway + 10}
        token = jwt.encode(within_leeway, key.private, algorithm="EdDSA", headers={"kid": key.kid})
        assert tenant.client.get(path, headers=consumer(tenant.pk, token)).status_code == 200
    finally:
        clock.freeze(None)


def test_refresh_token_is_not_an_access_token(protected):
    tenant, path, guest = protected
    assert_refused(tenant, path, guest["refreshToken"])


def test_access_token_is_not_a_refresh_token(tenant):
    guest = tenant.guest()
    response = tenant.refresh(guest["accessToken"])
    assert response.status_code == 401
    assert response.json["error"] == "refresh_token_invalid"


def test_token_of_another_organization_is_refused(protected, actions, client):
    tenant, path, _ = protected
    other = TenantActions(client, actions.create_org("Other")["keys"]["test"])
    assert_refused(tenant, path, other.guest()["accessToken"])
    refreshed = tenant.refresh(other.guest()["refreshToken"])
    assert refreshed.status_code == 401 and refreshed.json["error"] == "refresh_token_invalid"


def test_token_of_another_mode_is_refused(protected, org, client):
    tenant, path, _ = protected
    live = TenantActions(client, org["keys"]["live"])
    assert_refused(tenant, path, live.guest()["accessToken"])
    refreshed = tenant.refresh(live.guest()["refreshToken"])
    assert refreshed.status_code == 401 and refreshed.json["error"] == "refresh_token_invalid"


def test_wrong_issuer_is_refused(protected, app):
    tenant, path, guest = protected
    key = app.extensions["usher"].auth.tokens.keyring.current()
    token = jwt.encode({**_claims(guest["accessToken"]), "iss": "https://evil.example"}, key.private,
                       algorithm="EdDSA", headers={"kid": key.kid})
    assert_refused(tenant, path, token)


def test_private_keys_are_encrypted_at_rest(app, tenant):
    """Read from the table, not the keyring's cache: every stored private key is sealed with a
    key derived from APP_SECRET (another secret cannot open it) and its raw bytes never appear.
    Independent of which keys another test or process has rotated in meanwhile."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from sqlalchemy import select

    from app.models import SigningKey
    from app.security.crypto import Sealer
    from tests.conftest import APP_SECRET

    tenant.guest()
    with app.extensions["usher"].db.sessionmaker() as session:
        rows = session.scalars(select(SigningKey)).all()
    assert rows
    sealer, stranger = Sealer(APP_SECRET, "usher signing keys v1"), Sealer("another-secret-" + "y" * 32,
                                                                           "usher signing keys v1")
    for row in rows:
        raw = sealer.open(row.private_key_encrypted, row.kid)
        assert raw not in row.private_key_encrypted
        public = Ed25519PrivateKey.from_private_bytes(raw).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        assert public == row.public_key
        with pytest.raises(InvalidTag):
            stranger.open(row.private_key_encrypted, row.kid)


def test_bearer_only_logout_works_as_in_the_seed(tenant):
    guest = tenant.guest()
    response = tenant.client.post("/api/v1/auth/logout", headers=bearer(guest["accessToken"]))  # no publishable key
    assert response.status_code == 204 and response.data == b""
    # The session has ended: neither of its tokens works any more.
    refused = tenant.refresh(guest["refreshToken"])
    assert refused.status_code == 401 and refused.json["error"] == "refresh_token_invalid"
    again = tenant.client.post("/api/v1/auth/logout", headers=bearer(guest["accessToken"]))
    assert again.status_code == 401 and again.json == {"error": "Authentication required"}

