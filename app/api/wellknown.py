"""Standard documents outside /api/v1: the JWKS and the RFC 8414 server metadata."""

from __future__ import annotations

import marshmallow as ma
from flask import current_app
from flask.views import MethodView

from app.api.security import public
from app.oauth import oauth_grants
from app.openapi import Blueprint
from app.schemas.common import always_sent

blp = Blueprint("wellknown", __name__, url_prefix="/.well-known",
                description="Public documents for merchant servers that verify tokens offline.")

JWKS_MAX_AGE = 300
CLOCK_MARGIN = 60


def jwks_max_age(lead_seconds: float, keyring_cache_seconds: float) -> int:
    """How long verifiers may cache the JWKS: 5 minutes, and always shorter than the rotation lead
    less what a worker takes to see a new key and a minute for clocks and requests, so a
    verifier that honours it has fetched a new key before the key signs."""
    return max(0, min(JWKS_MAX_AGE, int(lead_seconds - keyring_cache_seconds) - CLOCK_MARGIN))


@always_sent()
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
    @public
    @blp.doc(security=[])
    @blp.no_query
    @blp.response(200, Jwks, headers={"Cache-Control": {"schema": {"type": "string"}}})
    def get(self):
        """Public signing keys

        Ed25519 keys (OKP) that sign access tokens: the next key (published before it signs), the
        current one and the previous ones (until the tokens they signed have expired). Refresh
        tokens are signed with keys that are never published. Cache as `Cache-Control` says (at
        most 5 minutes, always less than the rotation lead); on an unknown `kid`, fetch again.
        """
        settings = current_app.extensions["usher"].settings
        max_age = jwks_max_age(settings.signing_key_lead_seconds, settings.keyring_cache_seconds)
        return current_app.extensions["usher"].auth.tokens.keyring.jwks(), 200, {
            "Cache-Control": f"public, max-age={max_age}"}


class ServerMetadata(ma.Schema):
    issuer = ma.fields.String(required=True)
    jwks_uri = ma.fields.String(required=True)
    token_endpoint = ma.fields.String(required=True)
    token_endpoint_auth_methods_supported = ma.fields.List(ma.fields.String(), required=True)
    grant_types_supported = ma.fields.List(ma.fields.String(), required=True)
    response_types_supported = ma.fields.List(ma.fields.String(), required=True)
    introspection_endpoint = ma.fields.String(required=True)
    introspection_endpoint_auth_methods_supported = ma.fields.List(ma.fields.String(), required=True)
    revocation_endpoint = ma.fields.String(required=True)
    revocation_endpoint_auth_methods_supported = ma.fields.List(ma.fields.String(), required=True)
    code_challenge_methods_supported = ma.fields.List(ma.fields.String(), required=True)
    service_documentation = ma.fields.String(required=True)


@blp.route("/oauth-authorization-server")
class Metadata(MethodView):
    @public
    @blp.doc(security=[])
    @blp.no_query
    @blp.response(200, ServerMetadata)
    def get(self):
        """Authorization server metadata (RFC 8414)

        Where merchants' servers and standard OAuth clients find the JWKS and the token,
        introspection and revocation endpoints. Every value is true: the token endpoint takes
        public clients (`none`: the publishable key as `client_id`) and two grants; introspection
        and revocation take HTTP Basic with the organization id and a secret key (and
        `Authorization: Bearer sk_…`, which no registered method name describes). Usher has no
        authorization endpoint (sessions are made by its JSON endpoints), so the only response
        type is `none`; S256 is the challenge method exchange codes accept.
        """
        usher = current_app.extensions["usher"]
        issuer = usher.settings.issuer.rstrip("/")
        return {"issuer": issuer, "jwks_uri": f"{issuer}/.well-known/jwks.json",
                "token_endpoint": f"{issuer}/oauth/token",
                "token_endpoint_auth_methods_supported": ["none"],
                "grant_types_supported": [grant.grant_type for grant in oauth_grants(usher.auth)],
                "response_types_supported": ["none"],
                "introspection_endpoint": f"{issuer}/oauth/introspect",
                "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
                "revocation_endpoint": f"{issuer}/oauth/revoke",
                "revocation_endpoint_auth_methods_supported": ["client_secret_basic"],
                "code_challenge_methods_supported": ["S256"],
                "service_documentation": f"{issuer}/docs"}
