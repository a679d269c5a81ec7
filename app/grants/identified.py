"""What every identified sign-in shares: find or create the consumer, upgrade the guest,
start the session. Runs inside the grant's Core write transaction; signing happens after it."""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, insert, select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.grants.base import BaseGrant
from app.models import Consumer, new_id
from app.services.sessions import insert_session, new_session_row
from app.services.upgrade import merge_guest
from app.services.views import session_body

CONSUMERS = Consumer.__table__
_FIND = {column: select(CONSUMERS.c.id).where(CONSUMERS.c.organization_id == bindparam("organization_id"),
                                              CONSUMERS.c.mode == bindparam("mode"),
                                              CONSUMERS.c[column] == bindparam("value"))
         for column in ("email", "phone")}
_INSERT_CONSUMER = insert(CONSUMERS)


def insert_consumer(connection: Connection, prefix: str, organization_id: str, mode: str, **identity) -> str:
    """A new consumer (`guest_…` or `cons_…`), by one Core insert; returns its id."""
    consumer_id = new_id(prefix)
    connection.execute(_INSERT_CONSUMER, {"id": consumer_id, "organization_id": organization_id, "mode": mode,
                                          "created_at": utcnow(), "email": identity.get("email"),
                                          "phone": identity.get("phone")})
    return consumer_id


def find_or_create_consumer(connection: Connection, organization_id: str, mode: str, **identity) -> str:
    """The id of the consumer with this email or phone in the tenant, created on first sign-in."""
    (column, value), = identity.items()
    found = connection.execute(_FIND[column], {"organization_id": organization_id, "mode": mode,
                                               "value": value}).scalar()
    if found is not None:
        return found
    return insert_consumer(connection, "cons", organization_id, mode, **identity)


def sign_in(grant: BaseGrant, connection: Connection, consumer_id: str):
    """Inside the grant's transaction: the guest merge and the new session row. Returns a
    function that signs the pair and makes the body, to call after the transaction."""
    ctx, server = grant.request.ctx, grant.server
    if grant.guest_id is not None:
        with Session(bind=connection) as orm:  # the cold path: the ORM, in the same transaction
            merge_guest(orm, grant.guest_id, consumer_id)
            orm.flush()
    row, generation = new_session_row(grant.kid, server.app_secret, ctx.organization, ctx.mode, consumer_id,
                                      grant.SESSION_TYPE)
    insert_session(connection, row)

    def finish() -> dict:
        access, refresh = server.tokens.sign_pair(generation)
        return session_body(row, access, refresh, guest_id=grant.guest_id)

    return row, finish
