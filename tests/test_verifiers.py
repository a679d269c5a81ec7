"""Merchants' resource servers, configured as the README says ("Verify Usher tokens in your
API"): PyJWT's PyJWKClient and joserfc, with `iss`, `aud` and EdDSA only, against the JWKS of a
real gunicorn. They accept the merchant's access tokens of one mode, and nothing else: no other
organization's, no other mode's, and no refresh token at all. Also Authlib's view of the RFC 8414
metadata and RFC 7662 introspection."""

from __future__ import annotations

import base64

import jwt
import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from joserfc import jwt as jose_jwt
from joserfc.errors import InvalidClaimError, JoseError, SecurityWarning
from joserfc.jwk import KeySet

from app import create_app
from tests.helpers import TenantActions, publishable, secret
from tests.live import http

ISSUER = "http://usher.test"


def pyjwt_verifier(jwks_url: str, audience: str):
    client = jwt.PyJWKClient(jwks_url, cache_keys=True)

    def verify(token: str) -> dict:
        key = client.get_signing_key_from_jwt(token)  # an unknown kid re-fetches the JWKS once
        return jwt.decode(token, key.key, algorithms=["EdDSA"], issuer=ISSUER, audience=audience,
                          options={"require": ["exp", "iat", "iss", "aud", "sub"]})

    return verify


def joserfc_verifier(jwks: dict, audience: str):
    keys = KeySet.import_key_set(jwks)
    claims = jose_jwt.JWTClaimsRegistry(iss={"essential": True, "value": ISSUER},
                                        aud={"essential": True, "value": audience})

    def verify(token: str) -> dict:
        # joserfc flags the `EdDSA` algorithm name (RFC 9864 prefers `Ed25519`); the contract fixes `EdDSA`.
        with pytest.warns(SecurityWarning, match="RFC 9864"):
            decoded = jose_jwt.decode(token, keys, algorithms=["EdDSA"])
        claims.validate(decoded.claims)
        return decoded.claims

    return verify


@pytest.fixture
def merchants(live_server, actions):
    """Two organizations; tokens of each in both modes, from the live server."""
    tokens = {}
    for name in ("acme", "other"):
        org = actions.create_org(name)
        for mode in ("test", "live"):
            reply = http("POST", live_server.url + "/api/v1/auth/guest",
                         publishable(org["keys"][mode]["publishableKey"]))
            assert reply.status == 201
            tokens[name, mode] = reply.body
        tokens[name] = org
    return tokens


def test_jwks_verifiers_accept_only_their_own_access_tokens(live_server, merchants):
    jwks_url = live_server.url + "/.well-known/jwks.json"
    acme = merchants["acme"]["organizationId"]
    for mode in ("test", "live"):
        audience = f"{acme}/{mode}"
        other_mode = "live" if mode == "test" else "test"
        for verify, unknown_kid, wrong_claim in (
                (pyjwt_verifier(jwks_url, audience), jwt.PyJWKClientError, jwt.InvalidAudienceError),
                (joserfc_verifier(http("GET", jwks_url).body, audience), JoseError, InvalidClaimError)):
            own = verify(merchants["acme", mode]["accessToken"])
            assert own["aud"] == audience and own["tokenType"] == "access" and own["mode"] == mode
            with pytest.raises(wrong_claim):  # another merchant's token: same issuer, same JWKS
                verify(merchants["other", mode]["accessToken"])
            with pytest.raises(wrong_claim):  # the other mode's token
                verify(merchants["acme", other_mode]["accessToken"])
            for key in [("acme", mode), ("acme", other_mode), ("other", mode)]:
                with pytest.raises(unknown_kid):  # every refresh token: its key is never published
                    verify(merchants[key]["refreshToken"])


def test_refresh_token_kids_are_never_in_the_jwks(live_server, merchants):
    published = {key["kid"] for key in http("GET", live_server.url + "/.well-known/jwks.json").body["keys"]}
    for key in [("acme", "test"), ("acme", "live"), ("other", "test")]:
        assert jwt.get_unverified_header(merchants[key]["accessToken"])["kid"] in published
        assert jwt.get_unverified_header(merchants[key]["refreshToken"])["kid"] not in published
        assert "aud" not in jwt.decode(merchants[key]["refreshToken"], options={"verify_signature": False})


def test_authorization_server_metadata_passes_authlib_validation(app_config):
    app = create_app({**app_config, "ISSUER": "https://usher.example"})  # RFC 8414 wants https
    client = app.test_client()
    metadata = client.get("/.well-known/oauth-authorization-server").json
    AuthorizationServerMetadata(metadata).validate()
    assert metadata["issuer"] == "https://usher.example"
    assert metadata["token_endpoint"] == "https://usher.example/oauth/token"
    assert metadata["grant_types_supported"] == ["refresh_token", "urn:ietf:params:oauth:grant-type:token-exchange"]
    assert metadata["token_endpoint_auth_methods_supported"] == ["none"]
    assert metadata["introspection_endpoint_auth_methods_supported"] == ["client_secret_basic"]
    # Every endpoint it names is served here.
    for name in ("token_endpoint", "introspection_endpoint", "revocation_endpoint"):
        assert client.post(metadata[name].removeprefix("https://usher.example"), data={}).status_code in (400, 401)
    assert client.get(metadata["jwks_uri"].removeprefix("https://usher.example")).status_code == 200
    assert client.get(metadata["service_documentation"].removeprefix("https://usher.example")).status_code == 200
    app.extensions["usher"].db.dispose()


def test_introspection_reports_the_token_type_and_audience_and_ignores_unknown_hints(tenant, org):
    guest = tenant.guest()
    basic = base64.b64encode(f"{org['organizationId']}:{tenant.sk}".encode()).decode()
    for hint in (None, "access_token", "refresh_token", "id_token", "bogus"):
        hinted = {"token_type_hint": hint} if hint else {}
        access = tenant.client.post("/oauth/introspect", data={"token": guest["accessToken"], **hinted},
                                    headers=secret(tenant.sk))
        assert access.status_code == 200, access.json
        assert access.json["active"] is True and access.json["token_type"] == "access_token"
        assert access.json["aud"] == f"{org['organizationId']}/test"
        refresh = tenant.client.post("/oauth/introspect", headers={"Authorization": f"Basic {basic}"},
                                     data={"token": guest["refreshToken"], **hinted})
        assert refresh.status_code == 200
        assert refresh.json["active"] is True and refresh.json["token_type"] == "refresh_token"
        assert "aud" not in refresh.json
    revoked = tenant.client.post("/oauth/revoke", data={"token": guest["refreshToken"], "token_type_hint": "bogus"},
                                 headers=secret(tenant.sk))
    assert revoked.status_code == 200
    assert tenant.client.post("/oauth/introspect", data={"token": guest["accessToken"]},
                              headers=secret(tenant.sk)).json == {"active": False}
    other_mode = TenantActions(tenant.client, org["keys"]["live"]).guest()
    assert tenant.client.post("/oauth/introspect", data={"token": other_mode["accessToken"]},
                              headers=secret(tenant.sk)).json == {"active": False}


def test_a_body_that_is_not_json_is_415(tenant):
    for content_type, data in (("application/x-www-form-urlencoded", "email=ann%40example.com"),
                               ("text/plain", '{"email": "ann@example.com"}'), ("", "email")):
        response = tenant.client.post("/api/v1/auth/otp/request", data=data, headers={
            **publishable(tenant.pk), **({"Content-Type": content_type} if content_type else {})})
        assert response.status_code == 415, response.json
        assert response.json == {"error": "unsupported_media_type", "message": "Send the body as application/json."}
    captured = tenant.client.get("/api/v1/test/otp-messages", headers=secret(tenant.sk)).json
    assert captured["data"] == []  # nothing was sent
    # No body at all is no data: logout's body is optional.
    guest = tenant.guest()
    assert tenant.client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {guest['accessToken']}"},
                              ).status_code == 204
