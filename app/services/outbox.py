"""The test-mode outbox: what test mode captured instead of sending."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.delivery.capture import CaptureSender
from app.errors import ApiError
from app.models import CapturedMessage

TEST_MODE_ONLY = "The outbox exists only in test mode; use a test-mode secret key."


def outbox_messages(session: Session, capture: CaptureSender, organization_id: str, mode: str,
                    limit: int) -> list[dict]:
    """The newest captured messages of the tenant; a live-mode caller is refused (403)."""
    if mode != "test":
        raise ApiError("forbidden", TEST_MODE_ONLY)
    rows = session.scalars(select(CapturedMessage).where(
        CapturedMessage.organization_id == organization_id, CapturedMessage.mode == "test")
        .order_by(CapturedMessage.id.desc()).limit(limit))
    messages = []
    for row in rows:
        body, code = capture.read(row)
        messages.append({"id": row.id, "channel": row.channel, "to": row.recipient, "body": body, "code": code,
                         "created_at": row.created_at})
    return messages
