"""Request a code: generate, deliver, store the keyed hash (replacing any previous code). The view
applies the limits first."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.db import Database
from app.delivery.base import DeliveryError, Message
from app.delivery.registry import Senders
from app.errors import ApiError
from app.models import OtpCode
from app.otp.identifiers import Identifier
from app.security.keys import keyed_hash

if TYPE_CHECKING:
    from app.security.callers import OrganizationSnapshot

log = logging.getLogger("usher.otp")

MAX_ATTEMPTS_PER_CODE = 5
FAILURES_PER_IDENTIFIER = "10 per hour"


class DeliveryFailed(ApiError):
    """The sender failed: 503, and nothing was stored."""


def generate_code(length: int) -> str:
    return f"{secrets.randbelow(10 ** length):0{length}d}"


def code_hash(app_secret: str, organization_id: str, mode: str, identifier: str, code: str) -> str:
    return keyed_hash(app_secret, "otp", organization_id, mode, identifier, code)


def mask(identifier: Identifier) -> str:
    if identifier.channel == "email":
        local, _, domain = identifier.value.partition("@")
        return f"{local[:1]}***@{domain}"
    return f"{identifier.value[:3]}***{identifier.value[-2:]}"


def _store(connection: Connection, values: dict) -> None:
    """Insert the code, or replace the identifier's previous one in place (one statement)."""
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    statement = insert(OtpCode).values(**values)
    replace = {k: statement.excluded[k] for k in ("channel", "code_hash", "created_at", "expires_at")}
    connection.execute(statement.on_conflict_do_update(
        index_elements=["organization_id", "mode", "identifier"],
        set_={**replace, "attempts": 0, "consumed_at": None}))


def request_code(db: Database, senders: Senders, app_secret: str, organization: OrganizationSnapshot, mode: str,
                 identifier: Identifier, now: datetime) -> datetime:
    """Send a new code and keep only its hash. Delivery comes first: if it fails, the previous
    code (if any) still works and the answer is 503 (`DeliveryFailed`, so the view gives the
    cooldown back)."""
    code = generate_code(organization.otp_length)
    expires_at = now.replace(microsecond=0) + timedelta(seconds=organization.otp_ttl)
    minutes = max(1, round(organization.otp_ttl / 60))
    message = Message(channel=identifier.channel, to=identifier.value, subject=f"Your {organization.name} code",
                      body=f"Your {organization.name} verification code is {code}. "
                           f"It expires in {minutes} minute{'s' if minutes != 1 else ''}.",
                      organization_id=organization.id, mode=mode, code=code)
    sender = senders.for_message(identifier.channel, mode)
    try:
        sender.send(message)
    except DeliveryError as exc:
        log.error("otp delivery failed: sender=%s to=%s org=%s error=%s", sender.name, mask(identifier),
                  organization.id, exc)
        raise DeliveryFailed("service_unavailable", "The code could not be sent. Please try again.",
                       headers={"Retry-After": "5"}) from None
    with db.write() as connection:  # after delivery: no transaction is open while a sender works
        _store(connection, {"organization_id": organization.id, "mode": mode, "identifier": identifier.value,
                    "channel": identifier.channel, "attempts": 0, "created_at": now, "expires_at": expires_at,
                    "code_hash": code_hash(app_secret, organization.id, mode, identifier.value, code)})
    log.info("otp sent: sender=%s to=%s org=%s mode=%s", sender.name, mask(identifier), organization.id, mode)
    return expires_at
