"""Response bodies shared by several flows."""

from __future__ import annotations

from datetime import UTC, datetime

from app.models import AuthSession


def instant(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def session_body(row: AuthSession, access: str, refresh: str, guest_id: str | None = None) -> dict:
    """The session + tokens body (attribute names; `SessionTokens` writes them in camelCase)."""
    session = {"type": row.type, "consumer_id": row.consumer_id, "session_id": row.id,
               "expires_at": instant(row.generation_access_exp)}
    if guest_id is not None:
        session["guest_id"] = guest_id
    return {"session": session, "access_token": access, "refresh_token": refresh}
