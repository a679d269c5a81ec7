from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class OtpCode(Base):
    """The live one-time code of one identifier; a new request replaces it in place.

    `code_hash` is HMAC(APP_SECRET) over organization, mode, identifier and code: never the code.
    """

    __tablename__ = "otp_codes"
    __table_args__ = (Index("ix_otp_codes_identifier", "organization_id", "mode", "identifier", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(4))
    identifier: Mapped[str] = mapped_column(String(320))
    channel: Mapped[str] = mapped_column(String(5))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    consumed_at: Mapped[datetime | None]


class CapturedMessage(Base):
    """A test-mode message, captured instead of sent; the body is sealed (AES-GCM) at rest."""

    __tablename__ = "captured_messages"
    __table_args__ = (Index("ix_captured_messages_tenant", "organization_id", "mode", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(4))
    channel: Mapped[str] = mapped_column(String(5))
    recipient: Mapped[str] = mapped_column(String(320))
    body_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
