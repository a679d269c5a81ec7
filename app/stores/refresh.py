"""Refresh-token rotation's persistence: a session row read, decided on, and the decision
written atomically.

The grant (`app.grants.refresh`) holds the policy, RFC 6749 §6 with the OAuth 2.0 Security
BCP's reuse detection: given the session row, a `Decision` (rotate, the current generation
inside the grace window, reuse, or invalid). The store holds the atomicity: it reads the row,
asks the policy, and carries the decision out so that concurrent rotations of one token rotate
once (the others get the grace answer, or reuse once the window has passed).

- `SqlRefreshStore` (every database): the row locked (FOR UPDATE; SQLite's write lock is held
  already) in one write transaction; a rotation saved, a reuse revokes the session, audits
  `refresh_token.reused` and emits `RefreshTokenReused`.
- `PostgresRefreshStore`: the common case, a rotation, in two autocommit round trips: the row
  read unlocked, the rotation written by an UPDATE that matches only if the session is still
  live and the rotated hash still its current one. Any other decision, and a rotation that
  lost a race, write nothing there and take the locked transaction, which decides again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Protocol

from sqlalchemy import Connection, bindparam

from app.db import Database
from app.events import RefreshTokenReused
from app.models import AuthSession
from app.services import audit
from app.services.events import Events
from app.services.sessions import (
    SELECT_SESSION,
    SESSIONS,
    UPDATE_ROTATED,
    read_session,
    revoke_one,
    rotation_values,
    save_rotation,
)
from app.tokens.service import Generation


class Verdict(Enum):
    """What the policy made of a presented refresh token and its session row."""

    #: The presented token is the current one: the row, changed by `rotate`, is saved.
    ROTATE = "rotate"
    #: A racing holder of the predecessor inside the grace window: the current generation again.
    CURRENT = "current"
    #: A rotated token presented again after the window: the session is revoked (theft).
    REUSED = "reused"
    #: Not the token's live session: nothing is written.
    INVALID = "invalid"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    #: The generation to sign (ROTATE, CURRENT); None otherwise.
    generation: Generation | None = None


#: The grant's policy: the session row (None: no such session) to a decision. Pure (it may
#: change the row it is given, as `rotate` does, and nothing else): a store may ask it twice.
Policy = Callable[[AuthSession | None], Decision]


class RefreshStore(Protocol):
    def rotate(self, session_id: str, decide: Policy, now: datetime) -> Decision:
        """Read the session, ask `decide`, carry the decision out atomically; the decision carried out."""
        ...


def lock_session(connection: Connection, session_id: str) -> AuthSession | None:
    """The session row, locked for this transaction (FOR UPDATE; SQLite's write lock is held
    already), as a detached value: a rotation writes it back with one Core UPDATE."""
    row = connection.execute(_SELECT_SESSION_FOR_UPDATE, {"session_id": session_id}).first()
    return None if row is None else AuthSession(**row._mapping)


def save_rotation_if_current(connection: Connection, row: AuthSession) -> bool:
    """Write a rotation only if the session is still live and its current refresh hash is still
    the one rotated from (`row.previous_refresh_hash`, set by `rotate`); whether it was written."""
    result = connection.execute(_UPDATE_ROTATED_IF_CURRENT,
                                {"compared_hash": row.previous_refresh_hash, **rotation_values(row)})
    return result.rowcount == 1


_SELECT_SESSION_FOR_UPDATE = SELECT_SESSION.with_for_update()
# (The compared hash binds as `compared_hash`: an UPDATE takes a parameter named after a column as a value to SET.)
_UPDATE_ROTATED_IF_CURRENT = UPDATE_ROTATED.where(SESSIONS.c.refresh_hash == bindparam("compared_hash"),
                                                  SESSIONS.c.revoked_at.is_(None))


class SqlRefreshStore:
    """Every database: one write transaction with the session row locked."""

    def __init__(self, db: Database, events: Events):
        self.db = db
        self.events = events

    def rotate(self, session_id: str, decide: Policy, now: datetime) -> Decision:
        with self.db.write() as connection:
            row = lock_session(connection, session_id)
            decision = decide(row)
            if row is not None and decision.verdict is Verdict.ROTATE:
                save_rotation(connection, row)
            elif row is not None and decision.verdict is Verdict.REUSED:
                self._revoke_reused(connection, row, now)
        return decision

    def _revoke_reused(self, connection: Connection, row: AuthSession, now: datetime) -> None:
        """End the session a stolen refresh token belongs to, audit it, and tell the merchant."""
        revoke_one(connection, self.events, row.id, "refresh_token_reused", now)
        audit.record(connection, row.organization_id, row.mode, audit.SYSTEM, "refresh_token.reused",
                     ("session", row.id), {"consumerId": row.consumer_id, "sessionRevoked": True}, now)
        self.events.record(connection, RefreshTokenReused(organization_id=row.organization_id, mode=row.mode,
                                                          session_id=row.id, consumer_id=row.consumer_id))


class PostgresRefreshStore(SqlRefreshStore):
    """PostgreSQL: a rotation in two autocommit round trips; anything else, the locked transaction."""

    def rotate(self, session_id: str, decide: Policy, now: datetime) -> Decision:
        with self.db.autocommit() as connection:
            row = read_session(connection, session_id)
            decision = decide(row)
            if row is not None and decision.verdict is Verdict.ROTATE and save_rotation_if_current(connection, row):
                return decision
        return super().rotate(session_id, decide, now)  # decided again, on the locked row
