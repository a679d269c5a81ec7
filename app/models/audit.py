"""The audit log: append-only events, hash-chained per (organization, mode).

`AuditChain` is the head of one chain (its last sequence number and hash): a writer locks it
(FOR UPDATE; SQLite's write lock already serializes writers), so concurrent writers queue
instead of forking the chain. Platform events (signing keys) go to the chain with an empty
organization id and mode.
"""

from __future__ import annotations

from sqlalchemy import JSON, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class AuditChain(Base):
    __tablename__ = "audit_chains"

    organization_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    mode: Mapped[str] = mapped_column(String(4), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    last_hash: Mapped[str | None] = mapped_column(String(64))


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        UniqueConstraint("organization_id", "mode", "seq", name="uq_audit_events_chain_seq"),
        Index("ix_audit_events_chain_type", "organization_id", "mode", "type", "seq"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(40))
    mode: Mapped[str] = mapped_column(String(4))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(64))
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict] = mapped_column(JSON)
    #: The instant as hashed: ISO 8601 UTC with microseconds and `Z` (exact on every backend).
    created_at: Mapped[str] = mapped_column(String(32))
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
