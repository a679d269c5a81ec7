"""Response bodies shared by several flows."""

from __future__ import annotations

from datetime import UTC, datetime

from app.models import AuthSession
from app.schemas.common import iso_instant


def instant(epoch: int) -> str:
    return iso_instant(datetime.fromtimestamp(epoch, UTC))


def session_body(row: AuthSession, access: str, refresh: str, guest_id: str | None = None) -> dict:
    """The session + tokens body (attribute names; `SessionTokens` writes them in camelCase)."""
    session = {"type": row.type, "consumer_id": row.consumer_id, "session_id": row.id,
               "expires_at": instant(row.generation_access_exp)}
    if guest_id is not None:
        session["guest_id"] = guest_id
    return {"session": session, "access_token": access, "refresh_token": refresh}


def session_created(row) -> dict:
    """The `data` of a `session.created` event."""
    return {"sessionId": row.id, "consumerId": row.consumer_id, "sessionType": row.type}
