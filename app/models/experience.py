from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class Experience(Base):
    """A drop or sale that consumers take part in (public Fanfare shape)."""

    __tablename__ = "experiences"
    __table_args__ = (Index("ix_experiences_tenant", "organization_id", "mode", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(4))
    name: Mapped[str] = mapped_column(String(200))
    open_at: Mapped[datetime | None]
    close_at: Mapped[datetime | None]
    time_zone: Mapped[str | None] = mapped_column(String(64))
    theme: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
