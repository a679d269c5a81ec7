from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class Consumer(Base):
    """A shopper of one organization and mode: a guest (`guest_…`) or identified (`cons_…`)."""

    __tablename__ = "consumers"
    __table_args__ = (
        Index("ix_consumers_tenant", "organization_id", "mode", "id"),
        Index("ix_consumers_email", "organization_id", "mode", "email", unique=True),
        Index("ix_consumers_phone", "organization_id", "mode", "phone", unique=True),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(4))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(20))
    merged_into: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def is_guest(self) -> bool:
        return self.id.startswith("guest_")


class AuthSession(Base):
    """A consumer's session and the current generation of its token pair.

    Refresh tokens are never stored: `refresh_hash` is a keyed hash of the current refresh
    token's `jti`, `previous_refresh_hash` that of its predecessor (for the grace window). The
    `generation_*` columns are what is needed to sign the current pair again, byte for byte
    (Ed25519 is deterministic), when racing tabs present the predecessor inside the window.
    """

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_consumer", "consumer_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(4))
    consumer_id: Mapped[str] = mapped_column(ForeignKey("consumers.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    refresh_hash: Mapped[str] = mapped_column(String(64))
    previous_refresh_hash: Mapped[str | None] = mapped_column(String(64))
    #: Which APP_SECRET made `refresh_hash` (a short fingerprint), for `secrets status`.
    refresh_fingerprint: Mapped[str | None] = mapped_column(String(16))
    rotated_at: Mapped[datetime | None]
    generation_kid: Mapped[str] = mapped_column(String(40))
    generation_refresh_kid: Mapped[str | None] = mapped_column(String(40))  # None: signed before refresh keys
    generation_iat: Mapped[int]
    generation_access_exp: Mapped[int]
    generation_refresh_exp: Mapped[int]
