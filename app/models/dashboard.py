from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class DashboardSession(Base):
    """A signed-in dashboard browser. It refers to the key it signed in with by id, never by
    value; the browser holds a random token whose keyed hash is the primary key.

    `reveal` is the one place a new key's value waits between the POST that made it and the page
    that shows it: sealed (AES-GCM, key derived from APP_SECRET) and cleared by that page.
    """

    __tablename__ = "dashboard_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(index=True)
    reveal: Mapped[bytes | None] = mapped_column(LargeBinary)
