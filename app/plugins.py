"""The plugin API of Usher: what a package may use to add a login method, a sender or a bot check.

Versioned by `API_VERSION` (major.minor): a minor version only adds names; a major version may
change or remove them, and a plugin declaring another major version is refused at start. A
plugin imports from this module only, never from Usher's internals, which change without notice.
The guide is docs/plugins.md; the reference plugin is examples/plugins/usher-magic-link/.

**Declaring.** A package names a `GrantPlugin`, `SenderPlugin` or `BotCheckPlugin` as an entry
point of the group `usher.grants`, `usher.senders` or `usher.bot_checks`; the entry point's name
is the plugin's name. Installing it opens nothing: a grant is served only when `ENABLED_GRANTS`
names it, a sender only when `OTP_EMAIL_SENDER` / `OTP_SMS_SENDER` does.

**Identifiers** are normalized as OTP normalizes them, so one shopper is one consumer whatever
method they sign in with: `normalize_email` (400 `invalid_email`), `normalize_phone` (E.164,
400 `invalid_phone`).

**In a request** (the functions below read the current app and caller, so a view calls them
without arguments it cannot know): the caller (`current_context`), the clock (`now`), limits
(`limit`), keyed hashes and single-use codes (`keyed_hash`, `SingleUseCodes`), consumers and the
sign-in with the guest upgrade (`find_or_create_consumer`, `sign_in`, inside `write()`), events
(`record_event`, `record_audit`), messages (`send_message`: test mode goes to the test outbox).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import Connection, Row, Table, delete, insert, select, update

from app.api.grants import GrantView
from app.api.ratelimit import client_key
from app.api.security import current_context, requires
from app.botdefense import (
    Attempt,
    BotCheck,
    BotCheckContext,
    BotCheckPlugin,
    refused,
    unavailable,
)
from app.config import ConfigError
from app.db import UTCDateTime
from app.delivery.base import DeliveryError, Message, Sender
from app.errors import ApiError, ErrorCode
from app.events import PluginEvent
from app.grants.base import BaseGrant, TokenRequest
from app.grants.identified import sign_in as _sign_in
from app.openapi import OPTIONAL_GUEST_TOKEN, Blueprint, ErrorSchema
from app.origins import origin_allowed
from app.otp.identifiers import normalize_email, normalize_phone
from app.registry import (
    API_VERSION,
    GrantPlugin,
    PurgeContext,
    SenderContext,
    SenderPlugin,
    stored_plugin_settings,
)
from app.schemas.auth import SessionTokens
from app.schemas.common import Instant, Schema
from app.security.callers import RequestContext
from app.security.keys import constant_time_equal
from app.security.keys import keyed_hash as _keyed_hash
from app.services import audit

__all__ = [
    "API_VERSION",
    "OPTIONAL_GUEST_TOKEN",
    "ApiError",
    "Attempt",
    "BotCheck",
    "BotCheckContext",
    "BotCheckPlugin",
    "ConfigError",
    "DeliveryError",
    "ErrorCode",
    "ErrorSchema",
    "Grant",
    "GrantPlugin",
    "GrantView",
    "Instant",
    "Message",
    "PurgeContext",
    "RequestContext",
    "Schema",
    "Sender",
    "SenderContext",
    "SenderPlugin",
    "SessionTokens",
    "SingleUseCodes",
    "TokenRequest",
    "UTCDateTime",
    "client_key",
    "constant_time_equal",
    "current_context",
    "doc",
    "find_or_create_consumer",
    "keyed_hash",
    "limit",
    "new_secret",
    "normalize_email",
    "normalize_phone",
    "now",
    "origin_allowed_for",
    "record_audit",
    "record_event",
    "refused",
    "requires",
    "send_message",
    "setting",
    "sign_in",
    "unavailable",
    "write",
]

#: A login method's grant: set `GRANT_TYPE`, `SESSION_TYPE`, `UPGRADES_GUEST`; implement
#: `validate_token_request()` and `create_token_response()` (see app.grants.base).
Grant = BaseGrant

#: The OpenAPI decorators for a plugin's views (`@doc.arguments`, `@doc.response`,
#: `@doc.alt_response`, `@doc.doc`): they declare the contract; the view is routed, per app,
#: only when its grant is enabled. Never registered itself.
doc = Blueprint("plugins", __name__)


def _usher():
    return current_app.extensions["usher"]


def now() -> datetime:
    """The app's clock (tests move it; never `datetime.now()`)."""
    return _usher().clock()


def keyed_hash(purpose: str, *parts: str) -> str:
    """HMAC-SHA256 under the app's secret, domain-separated by `purpose`: store this, never the secret."""
    return _keyed_hash(_usher().settings.app_secret, purpose, *parts)


def new_secret(prefix: str = "", nbytes: int = 32) -> str:
    """A random URL-safe secret (256 bits by default) with a recognizable prefix."""
    return prefix + secrets.token_urlsafe(nbytes)


def setting(name: str) -> Any:
    """The caller's mode's value of a settings field your grant declares (`GrantPlugin.settings`):
    the value set with `PATCH /settings` (`plugins`) or the dashboard, else the field's default."""
    ctx, registry = current_context(), current_app.extensions["usher_registry"]
    if name not in registry.settings_fields:
        raise KeyError(f"no enabled grant declares the setting {name!r}")
    stored = stored_plugin_settings(_usher().db, ctx.organization_id, ctx.mode)
    return registry.settings_values(stored)[name]


def limit(name: str, rate: str, key: str, *, fail_closed: bool = True) -> None:
    """Count one against `rate` ("5 per hour") for `key` in the caller's tenant; 429
    `rate_limited` with `Retry-After` once spent. Use `client_key()` for per-address limits.
    Name the limit after the plugin (`magic_link_request_ip`)."""
    ctx = current_context()
    _usher().limits.hit(name, rate, ctx.organization_id, ctx.mode, key, fail_closed=fail_closed)


def origin_allowed_for(url: str) -> bool:
    """Whether `url` is an http(s) URL whose origin is in the caller's mode's `allowedOrigins`
    (a place it is safe to send a shopper back to)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.username or parts.password:
        return False
    return origin_allowed(f"{parts.scheme}://{parts.netloc}", current_context().organization.allowed_origins)


@contextmanager
def write() -> Iterator[Connection]:
    """One write transaction (SQLAlchemy Core connection): everything in it commits together,
    or nothing does when the block raises."""
    with _usher().db.write() as connection:
        yield connection


def find_or_create_consumer(connection: Connection, *, email: str | None = None, phone: str | None = None) -> str:
    """The id of the caller's tenant's consumer with this (normalized) email or phone, created
    (`consumer.created`) on first sign-in."""
    if (email is None) == (phone is None):
        raise TypeError("give exactly one of email, phone")
    ctx = current_context()
    identity = {"email": email} if email is not None else {"phone": phone}
    return _usher().stores.sign_in.find_or_create_consumer(connection, ctx.organization_id, ctx.mode, now(), **identity)


def sign_in(grant: BaseGrant, connection: Connection, consumer_id: str) -> Callable[[], dict]:
    """Inside `write()`: start the consumer's session (`session.type` = the grant's
    `SESSION_TYPE`, `session.created`), upgrading the guest whose token came with the request
    (its queue places move, its session ends). Returns a function to call after the transaction
    that signs the tokens and makes the 200 body (`SessionTokens`)."""
    return _sign_in(grant, connection, consumer_id, now())[1]


def record_event(connection: Connection, event_type: str, data: dict) -> str | None:
    """A webhook event of the caller's tenant, in the transaction (declare `event_types`)."""
    ctx = current_context()
    return _usher().events.record(connection, PluginEvent(organization_id=ctx.organization_id, mode=ctx.mode,
                                                          event_type=event_type, payload=data))


def record_audit(connection: Connection, event_type: str, target: tuple[str, str | None] | None,
                 details: dict | None = None) -> dict:
    """An audit event of the caller's tenant, in the transaction, by the system; never put a
    secret or code in `details`."""
    ctx = current_context()
    return audit.record(connection, ctx.organization_id, ctx.mode, audit.SYSTEM, event_type, target, details, now())


def send_message(channel: str, to: str, subject: str, body: str) -> None:
    """Send by the app's sender for `channel` (`email`, `sms`); in test mode the message goes to
    the test outbox (`GET /api/v1/test/otp-messages`) instead. A failing sender is 503
    `service_unavailable`; a live mode without a real sender is 503 too (never printed)."""
    ctx = current_context()
    sender = _usher().senders.for_message(channel, ctx.mode)
    try:
        sender.send(Message(channel=channel, to=to, subject=subject, body=body, organization_id=ctx.organization_id,
                            mode=ctx.mode))
    except DeliveryError:
        raise ApiError("service_unavailable", "The message could not be sent. Please try again.",
                       headers={"Retry-After": "5"}) from None


class SingleUseCodes:
    """Single-use secrets kept as keyed hashes in a plugin's own table, which has at least
    `code_hash` (String(64), primary key), `organization_id`, `mode`, `created_at`,
    `expires_at`, `consumed_at` (nullable) and any columns of the plugin's.

    `consume` is one conditional UPDATE (… WHERE unconsumed AND unexpired RETURNING), so of
    concurrent uses exactly one wins, in the caller's transaction: if the sign-in after it
    fails, the code is not spent."""

    def __init__(self, table: Table, purpose: str, lifetime: timedelta, prefix: str = ""):
        self.table, self.purpose, self.lifetime, self.prefix = table, purpose, lifetime, prefix

    def hash(self, secret: str) -> str:
        return keyed_hash(self.purpose, secret)

    def issue(self, connection: Connection, **values: Any) -> tuple[str, datetime]:
        """A new secret for the caller's tenant with the plugin's `values`; (secret, expires_at)."""
        ctx, at = current_context(), now()
        secret = new_secret(self.prefix)
        expires_at = at.replace(microsecond=0) + self.lifetime
        connection.execute(insert(self.table).values(
            code_hash=self.hash(secret), organization_id=ctx.organization_id, mode=ctx.mode, created_at=at,
            expires_at=expires_at, consumed_at=None, **values))
        return secret, expires_at

    def consume(self, connection: Connection, secret: str, *, invalid: str, expired: str) -> Row:
        """Spend the secret and return its row, or raise `ApiError(invalid)` (unknown, another
        tenant's or already used) or `ApiError(expired)` (unused but past `expires_at`)."""
        ctx, at, c = current_context(), now(), self.table.c
        code_hash = self.hash(secret)
        mine = (c.code_hash == code_hash, c.organization_id == ctx.organization_id, c.mode == ctx.mode)
        row = connection.execute(update(self.table).where(*mine, c.consumed_at.is_(None), c.expires_at > at)
                                 .values(consumed_at=at).returning(*c)).first()
        if row is not None:
            return row
        found = connection.execute(select(c.consumed_at).where(*mine)).first()
        if found is not None and found.consumed_at is None:
            raise ApiError(expired)
        raise ApiError(invalid)

    def purge(self, ctx: PurgeContext, older_than: timedelta = timedelta(days=1)) -> int:
        """Delete codes expired more than `older_than` ago, a batch per transaction."""
        c, total = self.table.c, 0
        while True:
            with ctx.db.write() as connection:
                hashes = connection.execute(select(c.code_hash).where(c.expires_at < ctx.now - older_than)
                                            .limit(ctx.batch)).scalars().all()
                if not hashes:
                    return total
                total += connection.execute(delete(self.table).where(c.code_hash.in_(hashes))).rowcount
