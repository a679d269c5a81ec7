from __future__ import annotations

from marshmallow import ValidationError, fields, validate

from app import scope
from app.schemas.admin import DAY
from app.schemas.common import Instant, Schema, always_sent, page_schema


def _known_event_type(value: str) -> None:
    """Usher's event types and those of the app's enabled grants (the registry; the OpenAPI enum
    is written from the same list by `app.openapi.document_registered`)."""
    known = scope.registry().event_types
    if value not in known:
        raise ValidationError(f"Must be one of: {', '.join(known)}.")


class WebhookEndpointIn(Schema):
    url = fields.String(required=True, validate=validate.Length(1, 2048),
                        metadata={"description": "Live mode: `https`, resolving to public addresses only. "
                                                 "Test mode also allows `http` and loopback.",
                                  "example": "https://shop.example.com/usher/webhooks"})
    events = fields.List(fields.String(validate=lambda value: _known_event_type(value)), required=True,
                         validate=validate.Length(1, 100),
                         metadata={"description": "The event types this endpoint receives.",
                                   "example": ["session.created", "refresh_token.reused"]})
    description = fields.String(validate=validate.Length(max=500), allow_none=True)


@always_sent()
class WebhookEndpointOut(Schema):
    id = fields.String(metadata={"example": "we_01HXYZ123456789ABCDEFGHJK"})
    url = fields.String()
    events = fields.List(fields.String())
    description = fields.String(allow_none=True)
    created_at = Instant(data_key="createdAt")


@always_sent()
class WebhookEndpointCreated(WebhookEndpointOut):
    secret = fields.String(metadata={"description": "The signing secret, shown this once "
                                                    "(Standard Webhooks: base64 after `whsec_`).",
                                     "example": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})


class SecretRotation(Schema):
    expires_in = fields.Integer(data_key="expiresIn", load_default=0, validate=validate.Range(0, 7 * DAY),
                                metadata={"description": "Seconds during which the old secret still signs "
                                                         "(beside the new one); 0 = stop now."})


class DeliveryArgs(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 100),
                           metadata={"description": "Newest first; at most this many (1–100)."})


@always_sent()
class DeliveryOut(Schema):
    id = fields.String(metadata={"description": "The event id, sent as `webhook-id`.",
                                 "example": "msg_01HXYZ123456789ABCDEFGHJK"})
    event_type = fields.String(data_key="eventType", metadata={"example": "session.created"})
    status = fields.String(metadata={"enum": ["pending", "succeeded", "failed"]})
    attempts = fields.Integer()
    last_response_status = fields.Integer(data_key="lastResponseStatus", allow_none=True)
    last_error = fields.String(data_key="lastError", allow_none=True, metadata={
        "description": "Why the last attempt failed (`HTTP 500`, `timeout`, `connection: …`, `refused: …`); "
                       "null after a success or before any attempt.", "example": "HTTP 503"})
    next_attempt_at = Instant(data_key="nextAttemptAt", allow_none=True)


class DeliveryList(Schema):
    data = fields.List(fields.Nested(DeliveryOut), required=True)


WebhookEndpointPage = page_schema(WebhookEndpointOut, "WebhookEndpointPage")
