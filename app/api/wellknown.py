"""Standard documents outside /api/v1: the JWKS (and OAuth metadata when it comes)."""

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
