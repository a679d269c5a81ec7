"""RFC 7662 and RFC 7009 endpoints (outside /api/v1), answered by the app's Authlib server."""

from __future__ import annotations

import marshmallow as ma
from flask import current_app
from flask.views import MethodView

from app.openapi import Blueprint

blp = Blueprint("oauth", __name__, url_prefix="/oauth",
                description="Standard endpoints for merchant servers (form-encoded, RFC error shape).")

SECURITY: list[dict[str, list[str]]] = [{"secretKey": []}, {"merchantBasic": []}]


def _form(description: str) -> dict:
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": ["token"],
        "properties": {"token": {"type": "string", "description": description},
                       "token_type_hint": {"type": "string", "enum": ["access_token", "refresh_token", ""],
                                           "description": "Where to look first; empty means no hint."}}}}}}


class Introspection(ma.Schema):
    active = ma.fields.Boolean(required=True)
    consumerId = ma.fields.String()
    organizationId = ma.fields.String()
    sessionId = ma.fields.String()
    iat = ma.fields.Integer()
    exp = ma.fields.Integer()
    iss = ma.fields.String()
    sub = ma.fields.String()
    jti = ma.fields.String()
    mode = ma.fields.String()
    tokenType = ma.fields.String()
    token_type = ma.fields.String()
    client_id = ma.fields.String()


class OAuthError(ma.Schema):
    """RFC 6749 §5.2 error shape."""

    error = ma.fields.String(required=True, metadata={"example": "invalid_client"})
    error_description = ma.fields.String()
    requestId = ma.fields.String()


@blp.route("/introspect")
class Introspect(MethodView):
    @blp.doc(security=SECURITY, requestBody=_form("An access or refresh token."))
    @blp.response(200, Introspection)
    @blp.alt_response(400, schema=OAuthError, description="No `token` (`invalid_request`), or a bad hint")
    @blp.alt_response(401, schema=OAuthError, description="The caller is not a secret key (`invalid_client`)")
    def post(self):
        """Introspect a token (RFC 7662)

        `{"active": true, …claims}` for a live access or refresh token of the caller's organization
        and mode; `{"active": false}` for anything else (expired, revoked, rotated, foreign, malformed).
        """
        return current_app.extensions["oauth"].create_endpoint_response("introspection")


@blp.route("/revoke")
class Revoke(MethodView):
    @blp.doc(security=SECURITY, requestBody=_form("The token whose session ends."))
    @blp.response(200, ma.Schema)
    @blp.alt_response(400, schema=OAuthError, description="No `token` (`invalid_request`), or a bad hint")
    @blp.alt_response(401, schema=OAuthError, description="The caller is not a secret key (`invalid_client`)")
    def post(self):
        """Revoke a token (RFC 7009)

        Ends the token's session: its refresh token fails and its access tokens are refused.
        Unknown and foreign tokens answer 200 too, and change nothing.
        """
        return current_app.extensions["oauth"].create_endpoint_response("revocation")
