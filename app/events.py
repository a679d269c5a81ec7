"""The webhook events Usher sends: one frozen dataclass and one schema per type.

An event is made where the change is made (`SessionCreated(...)`) and given to the outbox
(`Events.record(connection, event)`, `app.services.events`) in the change's transaction. A
misspelt event is a NameError at import, not a webhook that silently never fires, and each
type's `data` is written by its schema, the same schema that documents it in the OpenAPI
document's `webhooks` section (`app.openapi.document_webhooks`). No Flask here: the grants and
services that make events are called with the outbox, never find it on a global.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from marshmallow import fields

from app.schemas.common import Schema


class SessionCreatedData(Schema):
    session_id = fields.String(data_key="sessionId", required=True)
    consumer_id = fields.String(data_key="consumerId", required=True)
    session_type = fields.String(data_key="sessionType", required=True,
                                 metadata={"description": "`guest`, `otp` or `external`."})


class SessionRevokedData(Schema):
    session_id = fields.String(data_key="sessionId", required=True)
    consumer_id = fields.String(data_key="consumerId", required=True)
    reason = fields.String(required=True, metadata={
        "description": "Why it ended: `signout`, `admin`, `upgraded`, `oauth_revoke`, `refresh_token_reused`, "
                       "`exchange_code_replayed`, …"})


class ConsumerCreatedData(Schema):
    consumer_id = fields.String(data_key="consumerId", required=True)
    guest = fields.Boolean(required=True, metadata={"description": "Whether it is a guest (`guest_…`)."})


class ConsumerMergedData(Schema):
    guest_id = fields.String(data_key="guestId", required=True)
    consumer_id = fields.String(data_key="consumerId", required=True)


class RefreshTokenReusedData(Schema):
    session_id = fields.String(data_key="sessionId", required=True)
    consumer_id = fields.String(data_key="consumerId", required=True)


class ExchangeCodeReplayedData(Schema):
    session_id = fields.String(data_key="sessionId", required=True, allow_none=True)
    consumer_id = fields.String(data_key="consumerId", required=True, allow_none=True)


@dataclass(frozen=True, kw_only=True)
class Event:
    """One change of a tenant (organization × mode) that merchants may subscribe to."""

    TYPE: ClassVar[str]
    SCHEMA: ClassVar[Schema]
    #: One line for the OpenAPI `webhooks` entry.
    SUMMARY: ClassVar[str]

    organization_id: str
    mode: str

    @property
    def type(self) -> str:
        return self.TYPE

    def data(self) -> dict[str, Any]:
        """The event's `data`, as its schema writes it (camelCase)."""
        return self.SCHEMA.dump(self)


@dataclass(frozen=True, kw_only=True)
class SessionCreated(Event):
    TYPE = "session.created"
    SCHEMA = SessionCreatedData()
    SUMMARY = "A session started: a guest, a one-time code or an external sign-in."
    session_id: str
    consumer_id: str
    session_type: str


@dataclass(frozen=True, kw_only=True)
class SessionRevoked(Event):
    TYPE = "session.revoked"
    SCHEMA = SessionRevokedData()
    SUMMARY = "A session ended before it expired."
    session_id: str
    consumer_id: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class ConsumerCreated(Event):
    TYPE = "consumer.created"
    SCHEMA = ConsumerCreatedData()
    SUMMARY = "A consumer was created: a guest, or an email or phone signing in for the first time."
    consumer_id: str
    guest: bool


@dataclass(frozen=True, kw_only=True)
class ConsumerMerged(Event):
    TYPE = "consumer.merged"
    SCHEMA = ConsumerMergedData()
    SUMMARY = "A guest signed in: its queue places moved to the consumer and the guest ended."
    guest_id: str
    consumer_id: str


@dataclass(frozen=True, kw_only=True)
class RefreshTokenReused(Event):
    TYPE = "refresh_token.reused"
    SCHEMA = RefreshTokenReusedData()
    SUMMARY = "A rotated refresh token was presented again (theft): its session was revoked."
    session_id: str
    consumer_id: str


@dataclass(frozen=True, kw_only=True)
class ExchangeCodeReplayed(Event):
    TYPE = "exchange_code.replayed"
    SCHEMA = ExchangeCodeReplayedData()
    SUMMARY = "A consumed exchange code was presented again: the session it made was revoked."
    session_id: str | None
    consumer_id: str | None


#: Usher's own event types, in the order the documentation lists them.
BUILTIN_EVENTS: tuple[type[Event], ...] = (SessionCreated, SessionRevoked, ConsumerCreated, ConsumerMerged,
                                           RefreshTokenReused, ExchangeCodeReplayed)
EVENT_TYPES: tuple[str, ...] = tuple(event.TYPE for event in BUILTIN_EVENTS)


@dataclass(frozen=True, kw_only=True)
class PluginEvent(Event):
    """An event of a type a plugin declared (`event_types`); its `data` is the plugin's own."""

    TYPE = ""
    event_type: str
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return self.event_type

    def data(self) -> dict[str, Any]:
        return self.payload
