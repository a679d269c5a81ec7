"""Sessions and their token generations: start, rotate, revoke.

A generation is fully described by the `AuthSession` row plus the predecessor's `jti`: the
successor's ids are derived with HMAC(APP_SECRET) from the refresh token being rotated, so
only a holder of that token can have them signed again, and nothing secret is stored.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.orm import Session

from app.models import AuthSession, Consumer, new_id
from app.security.crypto import short_fingerprint
from app.security.keys import keyed_hash
from app.tokens.service import Generation, Kids, TokenService

if TYPE_CHECKING:
    from app.security.callers import OrganizationSnapshot
    from app.services.events import Events


def random_jti() -> str:
    return secrets.token_hex(16)


def successor_jtis(app_secret: str, refresh_jti: str) -> tuple[str, str]:
    """The (access, refresh) jtis of the generation that follows a refresh token."""
    return (keyed_hash(app_secret, "access-successor", refresh_jti)[:32],
            keyed_hash(app_secret, "refresh-successor", refresh_jti)[:32])


def refresh_hash(app_secret: str, refresh_jti: str) -> str:
    return keyed_hash(app_secret, "refresh", refresh_jti)


def _stamp(row: AuthSession, kids: Kids, now: datetime, organization: OrganizationSnapshot) -> None:
    iat = int(now.timestamp())
    row.generation_kid = kids.access
    row.generation_refresh_kid = kids.refresh
    row.generation_iat = iat
    row.generation_access_exp = iat + organization.access_token_ttl
    row.generation_refresh_exp = iat + organization.refresh_token_ttl
    row.expires_at = now.replace(microsecond=0) + timedelta(seconds=organization.refresh_token_ttl)


def generation_of(row: AuthSession, access_jti: str, refresh_jti: str) -> Generation:
    return Generation(kid=row.generation_kid, organization_id=row.organization_id, mode=row.mode,
                      consumer_id=row.consumer_id, session_id=row.id, access_jti=access_jti,
                      refresh_jti=refresh_jti, iat=row.generation_iat, access_exp=row.generation_access_exp,
                      refresh_exp=row.generation_refresh_exp,
                      # a generation made before refresh keys was signed with one (legacy) key
                      refresh_kid=row.generation_refresh_kid or row.generation_kid)


SESSIONS = AuthSession.__table__
_INSERT_SESSION = insert(SESSIONS)
#: One session row by id (`session_id`); the refresh store locks it (`app.stores.refresh`).
SELECT_SESSION = select(SESSIONS).where(SESSIONS.c.id == bindparam("session_id"))
_ROTATED = ("previous_refresh_hash", "refresh_hash", "refresh_fingerprint", "rotated_at", "generation_kid",
            "generation_refresh_kid", "generation_iat",
            "generation_access_exp", "generation_refresh_exp", "expires_at")
#: A rotation written back (`rotation_values`); the refresh store makes it conditional.
UPDATE_ROTATED = (update(SESSIONS).where(SESSIONS.c.id == bindparam("session_id"))
                  .values({name: bindparam(name) for name in _ROTATED}))


def rotation_values(row: AuthSession) -> dict:
    """The parameters of `UPDATE_ROTATED` for a rotated row."""
    return {"session_id": row.id, **{name: getattr(row, name) for name in _ROTATED}}


_REVOKED = (SESSIONS.c.id, SESSIONS.c.consumer_id, SESSIONS.c.organization_id, SESSIONS.c.mode)
_REVOKE_ONE = (update(SESSIONS).where(SESSIONS.c.id == bindparam("session_id"), SESSIONS.c.revoked_at.is_(None))
               .values(revoked_at=bindparam("now"), revoked_reason=bindparam("reason")).returning(*_REVOKED))


def revoke_one(connection: Connection, events: Events, session_id: str, reason: str, now: datetime):
    """End one session (a prebuilt statement, for the grants' hot paths); returns the ended
    session's (id, consumer_id, organization_id, mode), or None. Emits `session.revoked`."""
    rows = connection.execute(_REVOKE_ONE, {"session_id": session_id, "now": now, "reason": reason}).all()
    events.sessions_revoked(connection, rows, reason)
    return rows[0] if rows else None


def revoke_sessions(connection: Connection, events: Events, reason: str, now: datetime, *criteria) -> int:
    """End every live session matching the criteria; return how many. The one revocation of
    Usher: from an ORM transaction pass `session.connection()`."""
    rows = connection.execute(update(AuthSession).where(AuthSession.revoked_at.is_(None), *criteria)
                              .values(revoked_at=now, revoked_reason=reason).returning(*_REVOKED)).all()
    events.sessions_revoked(connection, rows, reason)  # `session.revoked`, for whoever listens
    return len(rows)


def save_rotation(connection: Connection, row: AuthSession) -> None:
    connection.execute(UPDATE_ROTATED, rotation_values(row))


def read_session(connection: Connection, session_id: str) -> AuthSession | None:
    """The session row, unlocked (for a write that is conditional on what was read)."""
    row = connection.execute(SELECT_SESSION, {"session_id": session_id}).first()
    return None if row is None else AuthSession(**row._mapping)


def new_session_row(kids: Kids, app_secret: str, organization, mode: str, consumer_id: str,
                    session_type: str, now: datetime) -> tuple[AuthSession, Generation]:
    """A new session row (not yet stored) and the generation its first pair is signed from."""
    access_jti, refresh_jti = random_jti(), random_jti()
    row = AuthSession(id=new_id("sess"), organization_id=organization.id, mode=mode, consumer_id=consumer_id,
                      type=session_type, created_at=now, refresh_hash=refresh_hash(app_secret, refresh_jti),
                      refresh_fingerprint=short_fingerprint(app_secret))
    _stamp(row, kids, now, organization)
    return row, generation_of(row, access_jti, refresh_jti)


_NEW_GUEST = insert(Consumer.__table__).values(id=bindparam("guest_id"),
                                                organization_id=bindparam("guest_organization_id"),
                                                mode=bindparam("guest_mode"), created_at=bindparam("guest_created_at"))
_INSERT_GUEST_AND_SESSION = (insert(SESSIONS).values({column.key: bindparam(column.key) for column in SESSIONS.columns})
                             .add_cte(_NEW_GUEST.cte("new_guest")))


def insert_guest_and_session(connection: Connection, row: AuthSession) -> None:
    """The guest consumer and its session in one statement (PostgreSQL: a data-modifying CTE),
    so on an autocommit connection one round trip writes both, atomically."""
    connection.execute(_INSERT_GUEST_AND_SESSION, {
        "guest_id": row.consumer_id, "guest_organization_id": row.organization_id, "guest_mode": row.mode,
        "guest_created_at": row.created_at, **{column.key: getattr(row, column.key) for column in SESSIONS.columns}})


def insert_session(connection: Connection, row: AuthSession) -> None:
    connection.execute(_INSERT_SESSION, {column.key: getattr(row, column.key) for column in SESSIONS.columns})


def start_session(session: Session, tokens: TokenService, kids: Kids, app_secret: str, organization, mode: str,
                  consumer_id: str, session_type: str, now: datetime) -> tuple[AuthSession, str, str]:
    """A session started in the caller's ORM transaction, and its signed first pair: the form
    for seeding many sessions at once (the benchmark's and tests' fixtures); the grants insert
    on their Core transaction and sign after it."""
    row, generation = new_session_row(kids, app_secret, organization, mode, consumer_id, session_type, now)
    insert_session(session.connection(), row)
    access, refresh = tokens.sign_pair(generation)
    return row, access, refresh


def rotate(row: AuthSession, kids: Kids, app_secret: str, organization, presented_jti: str,
           now: datetime) -> Generation:
    """Make the successor of the presented (current) refresh token the current generation; the
    caller saves the row and, after its transaction, signs the returned generation."""
    access_jti, refresh_jti = successor_jtis(app_secret, presented_jti)
    row.previous_refresh_hash = row.refresh_hash
    row.refresh_hash = refresh_hash(app_secret, refresh_jti)
    row.refresh_fingerprint = short_fingerprint(app_secret)
    row.rotated_at = now
    _stamp(row, kids, now, organization)
    return generation_of(row, access_jti, refresh_jti)


def successor_generation(row: AuthSession, app_secret: str, presented_jti: str) -> Generation:
    """The current generation, for a racing holder of its predecessor (inside the grace window)."""
    access_jti, refresh_jti = successor_jtis(app_secret, presented_jti)
    return generation_of(row, access_jti, refresh_jti)
