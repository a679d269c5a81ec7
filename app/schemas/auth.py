from __future__ import annotations

import phonenumbers
from marshmallow import ValidationError, fields, validate, validates_schema

from app.inputs import FullMatch
from app.schemas.common import Instant, Schema, always_sent

REGIONS = phonenumbers.SUPPORTED_REGIONS
JWT_EXAMPLE = "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9..."


class SessionInfo(Schema):
    type = fields.String(required=True, metadata={  # its enum: the enabled grants' (app.openapi.document_registered)
        "description": "The method that created the session."})
    consumer_id = fields.String(data_key="consumerId", required=True,
                                metadata={"example": "guest_01HXYZ123456789ABCDEFGHJK"})
    guest_id = fields.String(data_key="guestId",
                             metadata={"description": "The guest this session started as, or was upgraded from."})
    session_id = fields.String(data_key="sessionId", required=True,
                               metadata={"example": "sess_01HXYZ123456789ABCDEFGHJK"})
    expires_at = fields.String(data_key="expiresAt", required=True,
                               metadata={"description": "When the access token expires (UTC).",
                                         "format": "date-time", "example": "2024-12-01T10:00:00Z"})


class SessionTokens(Schema):
    session = fields.Nested(SessionInfo, required=True)
    access_token = fields.String(data_key="accessToken", required=True, metadata={"example": JWT_EXAMPLE})
    refresh_token = fields.String(data_key="refreshToken", required=True, metadata={"example": JWT_EXAMPLE})


class RefreshIn(Schema):
    refresh_token = fields.String(data_key="refreshToken", required=True, validate=validate.Length(1, 4096),
                                  metadata={"example": JWT_EXAMPLE})


class TokenPair(Schema):
    access_token = fields.String(data_key="accessToken", required=True, metadata={"example": JWT_EXAMPLE})
    refresh_token = fields.String(data_key="refreshToken", required=True, metadata={"example": JWT_EXAMPLE})


class LogoutIn(Schema):
    scope = fields.String(load_default="local", validate=validate.OneOf(["local", "others", "global"]),
                          metadata={"description": "`local`: this session; `others`: the consumer's other "
                                                   "sessions; `global`: all of them."})


@always_sent()
class SessionOut(Schema):
    id = fields.String()
    type = fields.String()
    consumer_id = fields.String(data_key="consumerId")
    created_at = Instant(data_key="createdAt")
    expires_at = Instant(data_key="expiresAt", metadata={"description": "When the refresh token expires."})
    revoked_at = Instant(data_key="revokedAt", allow_none=True)
    revoked_reason = fields.String(data_key="revokedReason", allow_none=True)


def _one_identifier(data: dict) -> None:
    has_email, has_phone = data.get("email") is not None, data.get("phone") is not None
    if has_email == has_phone:
        raise ValidationError("Send either email or phone.", "email" if has_email else "_schema")
    if has_email and data.get("default_country") is not None:
        raise ValidationError("Only with phone.", "defaultCountry")


class OtpIdentifier(Schema):
    email = fields.String(validate=validate.Length(1, 320), metadata={"example": "ann@example.com"})
    phone = fields.String(validate=validate.Length(1, 32), metadata={"example": "+12025551234"})
    default_country = fields.String(data_key="defaultCountry", validate=validate.OneOf(sorted(REGIONS)),
                                    metadata={"description": "ISO 3166 alpha-2, for national phone formats.",
                                              "example": "US"})

    @validates_schema
    def _exactly_one(self, data, **_kwargs):
        _one_identifier(data)


class OtpRequestIn(OtpIdentifier):
    pass


class OtpRequestOut(Schema):
    sent = fields.Boolean(required=True)
    expires_at = Instant(data_key="expiresAt", required=True)


class OtpVerifyIn(OtpIdentifier):
    code = fields.String(required=True, validate=FullMatch(r"[0-9]{6,10}", error="6 to 10 digits."),
                         metadata={"example": "123456"})


class OutboxArgs(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))


@always_sent()
class OutboxMessage(Schema):
    id = fields.String()
    channel = fields.String(metadata={"enum": ["email", "sms"]})
    to = fields.String()
    body = fields.String()
    code = fields.String(allow_none=True, metadata={
        "description": "The one-time code the body carries, so test clients need not parse the text (test mode "
                       "only, like the outbox; null for a message captured before codes were kept).",
        "example": "123456"})
    created_at = Instant(data_key="createdAt")


class OutboxList(Schema):
    data = fields.List(fields.Nested(OutboxMessage), required=True)


class AltchaChallenge(Schema):
    algorithm = fields.String(required=True, metadata={"enum": ["SHA-256"]})
    challenge = fields.String(required=True, metadata={"description": "Hex SHA-256 of `salt` and the secret number."})
    maxnumber = fields.Integer(required=True, metadata={"description": "The secret number is at most this.",
                                                        "example": 50000})
    salt = fields.String(required=True, metadata={"description": "Carries its own expiry (5 minutes).",
                                                  "example": "4a1c0f9e2b7d8a3c5e6f7a8b?expires=1733566800&"})
    signature = fields.String(required=True, metadata={"description": "HMAC of `challenge`, for this mode only."})


class ChallengeOut(Schema):
    provider = fields.String(required=True, metadata={"enum": ["off", "altcha", "turnstile", "hcaptcha"]})
    site_key = fields.String(data_key="siteKey", metadata={"description": "Turnstile and hCaptcha: the widget's "
                                                                          "site key."})
    challenge = fields.Nested(AltchaChallenge, metadata={"description": "ALTCHA: the challenge to solve (the "
                                                                        "format ALTCHA's widget and libraries read)."})
