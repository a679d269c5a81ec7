"""Response bodies shared by several flows."""

from __future__ import annotations

from datetime import UTC, datetime

from app.events import SessionCreated
from app.models import AuthSession
from app.schemas.common import iso_instant


def instant(epoch: int) -> str:
    return iso_instant(datetime.fromtimestamp(epoch, UTC))


def session_body(row: AuthSession, access: str, refresh: str, guest_id: str | None = None) -> dict:
    """The session + tokens body in wire form, exactly as `SessionTokens` would write it (keys
    in its field order; tests/test_wire_bodies.py holds the two together)."""
    session = {"type": row.type, "consumerId": row.consumer_id}
    if guest_id is not None:
        session["guestId"] = guest_id
    session["sessionId"] = row.id
    session["expiresAt"] = instant(row.generation_access_exp)
    return {"session": session, "accessToken": access, "refreshToken": refresh}


def session_created(row) -> SessionCreated:
    """The `session.created` event of a new session row."""
    return SessionCreated(organization_id=row.organization_id, mode=row.mode, session_id=row.id,
                          consumer_id=row.consumer_id, session_type=row.type)
