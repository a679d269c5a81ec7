from __future__ import annotations

from marshmallow import fields, validate

from app.schemas.common import Instant, Schema

JWT_EXAMPLE = "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9..."


class SessionInfo(Schema):
    type = fields.String(required=True, metadata={"enum": ["guest", "otp", "external"],
                                                  "description": "The method that created the session."})
    consumer_id = fields.String(data_key="consumerId", required=True,
                                metadata={"example": "guest_01HXYZ123456789ABCDEFGHJK"})
    guest_id = fields.String(data_key="guestId",
                             metadata={"description": "The guest this session started as, or was upgraded from."})
    session_id = fields.String(data_key="sessionId", required=True,
                               metadata={"example": "sess_01HXYZ123456789ABCDEFGHJK"})
    expires_at = fields.String(data_key="expiresAt", required=True,
                               metadata={"description": "When the access token expires (UTC).",
                                         "example": "2024-12-01T10:00:00Z"})


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


class SessionOut(Schema):
    id = fields.String()
    type = fields.String()
    consumer_id = fields.String(data_key="consumerId")
    created_at = Instant(data_key="createdAt")
    expires_at = Instant(data_key="expiresAt", metadata={"description": "When the refresh token expires."})
    revoked_at = Instant(data_key="revokedAt", allow_none=True)
    revoked_reason = fields.String(data_key="revokedReason", allow_none=True)
