"""The RFC 6749 token endpoint (the app's grant registry through `app.oauth.token_response`) and
the RFC 7662 / RFC 7009 endpoints (the app's Authlib server), outside /api/v1."""

from __future__ import annotations

import marshmallow as ma
from flask import current_app
from flask.views import MethodView

from app.api.security import public
from app.oauth import endpoint_response, token_response
from app.openapi import Blueprint, ErrorSchema

blp = Blueprint("oauth", __name__, url_prefix="/oauth",
                description="Standard OAuth endpoints for shops' clients and merchant servers (form-encoded, "
                            "RFC error shape).")

SECURITY: list[dict[str, list[str]]] = [{"secretKey": ["introspect"]}, {"merchantBasic": ["introspect"]}]
SCOPE_DOC = {"x-required-scopes": ["introspect"]}


def _form(description: str) -> dict:
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": ["token"],
        "properties": {"token": {"type": "string", "description": description},
                       "token_type_hint": {"type": "string", "examples": ["access_token", "refresh_token"],
                                           "description": "Where to look first (`access_token` or "
                                                          "`refresh_token`); any other value is ignored."}}}}}}


class Introspection(ma.Schema):
    active = ma.fields.Boolean(required=True)
    consumerId = ma.fields.String()
    organizationId = ma.fields.String()
    sessionId = ma.fields.String()
    iat = ma.fields.Integer()
    exp = ma.fields.Integer()
    iss = ma.fields.String()
    sub = ma.fields.String()
    aud = ma.fields.String(metadata={"description": "`<organizationId>/<mode>`, on access tokens only."})
    jti = ma.fields.String()
    mode = ma.fields.String()
    tokenType = ma.fields.String()
    token_type = ma.fields.String(metadata={"enum": ["access_token", "refresh_token"]})
    client_id = ma.fields.String()


class Revoked(ma.Schema):
    """RFC 7009 §2.2: an empty object, whether or not there was anything to revoke."""


TOKEN_FORM = {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
    "type": "object", "required": ["grant_type", "client_id"],
    "properties": {
        "grant_type": {"type": "string", "enum": ["refresh_token", "urn:ietf:params:oauth:grant-type:token-exchange"]},
        "client_id": {"type": "string", "description": "The publishable key (`pk_test_…` / `pk_live_…`).",
                      "examples": ["pk_test_…"]},
        "refresh_token": {"type": "string", "description": "`refresh_token` grant: the refresh token to rotate."},
        "subject_token": {"type": "string", "description": "Token exchange: the exchange code (`exc_…`)."},
        "subject_token_type": {"type": "string", "enum": ["urn:usher:params:oauth:token-type:exchange-code"],
                               "description": "Token exchange: always the exchange-code type."},
        "requested_token_type": {"type": "string", "enum": ["urn:ietf:params:oauth:token-type:access_token"],
                                 "description": "Token exchange, optional: an access token (with a refresh token)."},
        "code_verifier": {"type": "string", "description": "Token exchange: the PKCE verifier, when (and only "
                                                           "when) the code was created with a `codeChallenge`."}}},
    "examples": {
        "refresh": {"summary": "Rotate a refresh token",
                    "value": {"grant_type": "refresh_token", "refresh_token": "eyJ…", "client_id": "pk_test_…"}},
        "exchange": {"summary": "Exchange an exchange code (RFC 8693)",
                     "value": {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                               "subject_token": "exc_…",
                               "subject_token_type": "urn:usher:params:oauth:token-type:exchange-code",
                               "client_id": "pk_test_…"}}}}}}


class TokenResponse(ma.Schema):
    """RFC 6749 §5.1 (and RFC 8693 §2.2.1 for token exchange)."""

    access_token = ma.fields.String(required=True)
    token_type = ma.fields.String(required=True, metadata={"enum": ["Bearer"]})
    expires_in = ma.fields.Integer(required=True, metadata={"description": "Seconds until the access token expires."})
    refresh_token = ma.fields.String(required=True)
    issued_token_type = ma.fields.String(metadata={
        "enum": ["urn:ietf:params:oauth:token-type:access_token"], "description": "Token exchange only."})


class OAuthError(ma.Schema):
    """RFC 6749 §5.2 error shape."""

    error = ma.fields.String(required=True, metadata={"example": "invalid_client"})
    error_description = ma.fields.String()
    requestId = ma.fields.String()


@blp.route("/token")
class Token(MethodView):
    @public
    @blp.doc(security=[], requestBody=TOKEN_FORM)
    @blp.response(200, TokenResponse, headers={"Cache-Control": {"schema": {"type": "string"}}})
    @blp.alt_response(400, schema=OAuthError, description="`invalid_grant` (a refresh token or exchange code that "
                                                          "fails the same checks as the JSON endpoints), "
                                                          "`invalid_client` (`client_id` is not a valid "
                                                          "publishable key), `invalid_request`, "
                                                          "`unsupported_grant_type`, `invalid_target`, "
                                                          "`insecure_transport` (plain HTTP off loopback)")
    @blp.alt_response(401, schema=OAuthError, description="`invalid_client`: an `Origin` outside the mode's "
                                                          "`allowedOrigins` (nothing is done)")
    @blp.alt_response(429, schema=OAuthError, description="`rate_limited` (see `Retry-After`)")
    @blp.alt_response(503, schema=OAuthError, description="`temporarily_unavailable` (see `Retry-After`)")
    def post(self):
        """Token endpoint (RFC 6749)

        For standard OAuth clients of a shop (public clients: `client_id` is the publishable key,
        no secret). `grant_type=refresh_token` rotates a refresh token with the rotation, grace
        and reuse rules of `POST /api/v1/auth/refresh`; token exchange (RFC 8693) trades an
        exchange code for a session with the single-use, replay and PKCE rules of
        `POST /api/v1/auth/external/exchange`. The same code serves both dialects, with the same
        origin check: a browser `Origin` outside the mode's `allowedOrigins` is `invalid_client`
        and nothing is done (a form POST needs no preflight).
        """
        return token_response(current_app.extensions["usher"])


@blp.route("/introspect")
class Introspect(MethodView):
    @public
    @blp.doc(security=SECURITY, **SCOPE_DOC, requestBody=_form("An access or refresh token."))
    @blp.response(200, Introspection)
    @blp.alt_response(400, schema=OAuthError, description="No `token` (`invalid_request`), a bad hint, or "
                                                           "plain HTTP off loopback (`insecure_transport`)")
    @blp.alt_response(401, schema=OAuthError, description="The caller is not a secret or restricted key "
                                                           "(`invalid_client`)")
    @blp.alt_response(403, schema=ErrorSchema, description="`insufficient_scope`: a restricted key without "
                                                           "`introspect`")
    def post(self):
        """Introspect a token (RFC 7662)

        `{"active": true, …claims}` for a live access or refresh token of the caller's organization
        and mode; `{"active": false}` for anything else (expired, revoked, rotated, foreign, malformed).
        """
        return endpoint_response("introspection")


@blp.route("/revoke")
class Revoke(MethodView):
    @public
    @blp.doc(security=SECURITY, **SCOPE_DOC, requestBody=_form("The token whose session ends."))
    @blp.response(200, Revoked)
    @blp.alt_response(400, schema=OAuthError, description="No `token` (`invalid_request`), a bad hint, or "
                                                           "plain HTTP off loopback (`insecure_transport`)")
    @blp.alt_response(401, schema=OAuthError, description="The caller is not a secret or restricted key "
                                                           "(`invalid_client`)")
    @blp.alt_response(403, schema=ErrorSchema, description="`insufficient_scope`: a restricted key without "
                                                           "`introspect`")
    def post(self):
        """Revoke a token (RFC 7009)

        Ends the token's session: its refresh token fails and its access tokens are refused.
        Unknown and foreign tokens answer 200 too, and change nothing.
        """
        return endpoint_response("revocation")
