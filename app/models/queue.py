from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class Queue(Base):
    """A first-come queue under an experience (public Fanfare shape)."""

    __tablename__ = "queues"
    __table_args__ = (Index("ix_queues_tenant", "organization_id", "mode", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(4))
    experience_id: Mapped[str] = mapped_column(ForeignKey("experiences.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    capacity: Mapped[int | None]
    admission: Mapped[str] = mapped_column(String(10), default="any", server_default="any")
    open_at: Mapped[datetime | None]
    close_at: Mapped[datetime | None]
    next_sequence: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class QueueEntry(Base):
    """One consumer's place in one queue; `sequence` is the arrival order, never reused."""

    __tablename__ = "queue_entries"
    __table_args__ = (
        UniqueConstraint("queue_id", "consumer_id"),
        Index("ix_queue_entries_rank", "queue_id", "status", "sequence"),
        Index("ix_queue_entries_consumer", "consumer_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    queue_id: Mapped[str] = mapped_column(ForeignKey("queues.id", ondelete="CASCADE"))
    consumer_id: Mapped[str] = mapped_column(ForeignKey("consumers.id", ondelete="CASCADE"))
    sequence: Mapped[int]
    status: Mapped[str] = mapped_column(String(10), default="QUEUED")
    entered_at: Mapped[datetime] = mapped_column(default=utcnow)
    admitted_at: Mapped[datetime | None]
    left_at: Mapped[datetime | None]


class QueueCount(Base):
    """How many entries of a queue are QUEUED with a sequence in one aligned range: node `n` of
    level `l` covers sequences [n * 64**l, (n + 1) * 64**l). Kept in the transaction that
    changes an entry's status or sequence (app/services/queues.py), so that a position is a sum
    of at most 63 rows per level plus at most 63 entries, whatever the queue's length."""

    __tablename__ = "queue_counts"

    queue_id: Mapped[str] = mapped_column(ForeignKey("queues.id", ondelete="CASCADE"), primary_key=True)
    level: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    node: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    queued: Mapped[int] = mapped_column(default=0)
