"""Standard documents outside /api/v1: the JWKS and the RFC 8414 server metadata."""

from __future__ import annotations

import marshmallow as ma
from flask import current_app
from flask.views import MethodView

from app.openapi import Blueprint

blp = Blueprint("wellknown", __name__, url_prefix="/.well-known",
                description="Public documents for merchant servers that verify tokens offline.")

JWKS_MAX_AGE = 300


class Jwk(ma.Schema):
    kty = ma.fields.String(metadata={"example": "OKP"})
    crv = ma.fields.String(metadata={"example": "Ed25519"})
    x = ma.fields.String()
    kid = ma.fields.String()
    use = ma.fields.String(metadata={"example": "sig"})
    alg = ma.fields.String(metadata={"example": "EdDSA"})


class Jwks(ma.Schema):
    keys = ma.fields.List(ma.fields.Nested(Jwk), required=True)


@blp.route("/jwks.json")
class JwksDocument(MethodView):
    @blp.doc(security=[])
    @blp.response(200, Jwks, headers={"Cache-Control": {"schema": {"type": "string"}}})
    def get(self):
        """Public signing keys

        Ed25519 keys (OKP) that sign every token; the newest signs, retired keys stay until the
        tokens they signed have expired. Cache for up to 5 minutes; on an unknown `kid`, fetch again.
        """
        return current_app.extensions["usher"].auth.tokens.keyring.jwks(), 200, {
            "Cache-Control": f"public, max-age={JWKS_MAX_AGE}"}


class ServerMetadata(ma.Schema):
    issuer = ma.fields.String(required=True)
    jwks_uri = ma.fields.String(required=True)
    introspection_endpoint = ma.fields.String(required=True)
    revocation_endpoint = ma.fields.String(required=True)
    introspection_endpoint_auth_methods_supported = ma.fields.List(ma.fields.String())
    revocation_endpoint_auth_methods_supported = ma.fields.List(ma.fields.String())
    code_challenge_methods_supported = ma.fields.List(ma.fields.String())
    response_types_supported = ma.fields.List(ma.fields.String())
    grant_types_supported = ma.fields.List(ma.fields.String())


@blp.route("/oauth-authorization-server")
class Metadata(MethodView):
    @blp.doc(security=[])
    @blp.response(200, ServerMetadata)
    def get(self):
        """Authorization server metadata (RFC 8414)

        Where merchants' servers find the JWKS and the introspection and revocation endpoints.
        Sessions are made by Usher's own JSON endpoints (`/api/v1/auth/*`), not an OAuth token
        endpoint, so no `token_endpoint` is listed.
        """
        issuer = current_app.extensions["usher"].settings.issuer.rstrip("/")
        methods = ["client_secret_basic", "secret_key_bearer"]
        return {"issuer": issuer, "jwks_uri": f"{issuer}/.well-known/jwks.json",
                "introspection_endpoint": f"{issuer}/oauth/introspect",
                "revocation_endpoint": f"{issuer}/oauth/revoke",
                "introspection_endpoint_auth_methods_supported": methods,
                "revocation_endpoint_auth_methods_supported": methods,
                "code_challenge_methods_supported": ["S256"],
                "response_types_supported": [], "grant_types_supported": []}
