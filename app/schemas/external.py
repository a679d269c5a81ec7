from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from marshmallow import ValidationError, fields, validate, validates

from app.inputs import FullMatch
from app.schemas.common import Instant, Schema

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
MAX_CLAIMS = 32
MAX_CLAIM_KEY = 64
MAX_CLAIM_STRING = 1024
MAX_CLAIMS_BYTES = 4096
PRINTABLE = re.compile(r"[^\x00-\x1f\x7f]+")


def _issuer(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in LOCAL_HOSTS:
        return
    raise ValidationError("Must be an https URL (http only on localhost).")


class AuthorizeIn(Schema):
    provider = fields.String(required=True, validate=[
        validate.Length(1, 64), FullMatch(r"[A-Za-z0-9][A-Za-z0-9._:-]*",
                                                error="Letters, digits and . _ : - only.")],
        metadata={"example": "your-platform"})
    issuer = fields.String(required=True, validate=[validate.Length(1, 2048), _issuer],
                           metadata={"example": "https://your-domain.com"})
    subject = fields.String(required=True, validate=[validate.Length(1, 255),
                                                     FullMatch(PRINTABLE, error="No control characters.")],
                            metadata={"example": "user_123456"})
    claims = fields.Dict(keys=fields.String(validate=validate.Length(1, MAX_CLAIM_KEY)), allow_none=True,
                         metadata={"description": f"A flat object (strings, numbers, booleans, null), at most "
                                                  f"{MAX_CLAIMS} keys and {MAX_CLAIMS_BYTES} bytes.",
                                   "example": {"email": "john@example.com", "name": "John Doe"}})
    code_challenge = fields.String(data_key="codeChallenge", validate=FullMatch(
        r"[A-Za-z0-9_-]{43}", error="The base64url SHA-256 of a code verifier (43 characters)."),
        metadata={"description": "Optional binding (RFC 7636, S256): exchange then requires `codeVerifier`."})
    code_challenge_method = fields.String(data_key="codeChallengeMethod", validate=validate.OneOf(["S256"]))

    @validates("claims")
    def _flat(self, value, **_kwargs):
        if value is None:
            return
        if len(value) > MAX_CLAIMS:
            raise ValidationError(f"At most {MAX_CLAIMS} claims.")
        for key, item in value.items():
            if isinstance(item, str):
                if len(item) > MAX_CLAIM_STRING:
                    raise ValidationError(f"{key}: at most {MAX_CLAIM_STRING} characters.")
            elif item is not None and not isinstance(item, bool | int | float):
                raise ValidationError(f"{key}: claims must be flat (strings, numbers, booleans, null).")
        if len(json.dumps(value).encode()) > MAX_CLAIMS_BYTES:
            raise ValidationError(f"At most {MAX_CLAIMS_BYTES} bytes.")


class AuthorizeOut(Schema):
    exchange_code = fields.String(data_key="exchangeCode", required=True, metadata={"example": "exc_…"})
    expires_at = Instant(data_key="expiresAt", required=True)


class ExchangeIn(Schema):
    exchange_code = fields.String(data_key="exchangeCode", required=True, validate=validate.Length(1, 128),
                                  metadata={"example": "exc_…"})
    code_verifier = fields.String(data_key="codeVerifier", validate=FullMatch(
        r"[A-Za-z0-9._~-]{43,128}", error="43 to 128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636)."),
        metadata={"description": "Only for a code created with a `codeChallenge`; sent for one created "
                                 "without, it is refused (`exchange_code_invalid`, RFC 9700 §2.1.1)."})
