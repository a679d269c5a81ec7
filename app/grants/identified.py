"""What every identified sign-in shares: find or create the consumer, upgrade the guest,
start the session. Runs inside the grant's Core write transaction; signing happens after it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, bindparam, insert, select
from sqlalchemy.orm import Session

from app.errors import AUTHENTICATION_REQUIRED, ApiError
from app.events import ConsumerCreated, SessionCreated
from app.grants.base import BaseGrant
from app.models import AuthSession, Consumer, new_id
from app.services.sessions import insert_session, new_session_row, revoke_sessions
from app.services.upgrade import merge_guest
from app.services.views import session_body, session_created

if TYPE_CHECKING:
    from app.services.events import Events

CONSUMERS = Consumer.__table__
#: The events a first sign-in may record; a grant writes in one statement only when none is listened to.
SIGN_IN_EVENTS = (ConsumerCreated, SessionCreated)
_FIND = {column: select(CONSUMERS.c.id).where(CONSUMERS.c.organization_id == bindparam("organization_id"),
                                              CONSUMERS.c.mode == bindparam("mode"),
                                              CONSUMERS.c[column] == bindparam("value"))
         for column in ("email", "phone")}
_INSERT_CONSUMER = insert(CONSUMERS)


def insert_consumer(connection: Connection, events: Events, prefix: str, organization_id: str, mode: str,
                    now: datetime, consumer_id: str | None = None, **identity) -> str:
    """A new consumer (`guest_…` or `cons_…`, or the id given), by one Core insert; returns its id."""
    consumer_id = consumer_id or new_id(prefix)
    connection.execute(_INSERT_CONSUMER, {"id": consumer_id, "organization_id": organization_id, "mode": mode,
                                          "created_at": now, "email": identity.get("email"),
                                          "phone": identity.get("phone")})
    events.record(connection, ConsumerCreated(organization_id=organization_id, mode=mode, consumer_id=consumer_id,
                                              guest=prefix == "guest"))
    return consumer_id


def find_or_create_consumer(connection: Connection, events: Events, organization_id: str, mode: str,
                            now: datetime, **identity) -> str:
    """The id of the consumer with this email or phone in the tenant, created on first sign-in."""
    (column, value), = identity.items()
    found = connection.execute(_FIND[column], {"organization_id": organization_id, "mode": mode,
                                               "value": value}).scalar()
    if found is not None:
        return found
    return insert_consumer(connection, events, "cons", organization_id, mode, now, **identity)


def claim_guest(connection: Connection, events: Events, claims: dict, now: datetime) -> None:
    """End the upgrading guest's session, or 401 if it is no longer live.

    A conditional UPDATE inside the grant's transaction: of concurrent sign-ins carrying one
    guest token exactly one ends that session; the others see no row change, answer 401 and,
    their transaction rolled back, consume nothing."""
    ended = revoke_sessions(connection, events, "upgraded", now, AuthSession.id == claims["sessionId"],
                            AuthSession.consumer_id == claims["consumerId"],
                            AuthSession.organization_id == claims["organizationId"])
    if ended != 1:
        raise ApiError(AUTHENTICATION_REQUIRED)


def sign_in(grant: BaseGrant, connection: Connection, consumer_id: str,
            now: datetime) -> tuple[AuthSession, Callable[[], dict]]:
    """Inside the grant's transaction: the guest upgrade and the new session row. Returns a
    function that signs the pair and makes the body, to call after the transaction."""
    ctx, server = grant.request.ctx, grant.server
    if grant.guest_claims is not None:
        claim_guest(connection, server.events, grant.guest_claims, now)
        with Session(bind=connection) as orm:  # the cold path: the ORM, in the same transaction
            merge_guest(orm, server.events, grant.guest_claims["consumerId"], consumer_id, now)
            orm.flush()
    row, generation = new_session_row(grant.kids, server.app_secret, ctx.organization, ctx.mode, consumer_id,
                                      grant.SESSION_TYPE or "", now)
    insert_session(connection, row)
    server.events.record(connection, session_created(row))

    def finish() -> dict:
        access, refresh = server.tokens.sign_pair(generation)
        return session_body(row, access, refresh, guest_id=grant.guest_id)

    return row, finish
