from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class ExternalIdentity(Base):
    """An identity a merchant's platform vouched for: (provider, issuer, subject) → one consumer."""

    __tablename__ = "external_identities"
    __table_args__ = (
        Index("ix_external_identities_triple", "organization_id", "mode", "provider", "issuer", "subject",
              unique=True),
        Index("ix_external_identities_consumer", "consumer_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(4))
    consumer_id: Mapped[str] = mapped_column(ForeignKey("consumers.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(64))
    issuer: Mapped[str] = mapped_column(String(2048))
    subject: Mapped[str] = mapped_column(String(255))
    claims: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ExchangeCode(Base):
    """A single-use, 60-second code minted by a merchant's server; stored as a keyed hash."""

    __tablename__ = "exchange_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(4))
    provider: Mapped[str] = mapped_column(String(64))
    issuer: Mapped[str] = mapped_column(String(2048))
    subject: Mapped[str] = mapped_column(String(255))
    claims: Mapped[dict | None] = mapped_column(JSON)
    code_challenge: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    consumed_at: Mapped[datetime | None]
    session_id: Mapped[str | None] = mapped_column(String(40))
