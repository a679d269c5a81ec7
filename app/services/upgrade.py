"""Guest upgrade: a guest who signs in becomes (merges into) the identified consumer."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.events import ConsumerMerged
from app.models import AuthSession, Consumer, Queue, QueueEntry
from app.services.queues import count_change
from app.services.sessions import revoke_sessions

if TYPE_CHECKING:
    from app.services.events import Events


def merge_guest(session: Session, events: Events, guest_id: str, consumer_id: str, now: datetime) -> None:
    """Move the guest's queue places to the consumer (keeping the earlier place where both
    queued), end the guest's other sessions, and record `merged_into` on the guest."""
    guest = session.get_one(Consumer, guest_id)
    # Queue by queue in id order: the counters of several queues are locked in one order.
    gone: list[tuple[str, int]] = []  # (queue, sequence) of places no longer QUEUED
    for entry in session.scalars(select(QueueEntry).where(QueueEntry.consumer_id == guest_id)
                                 .order_by(QueueEntry.queue_id)).all():
        if session.get_one(Queue, entry.queue_id).admission == "identified":
            if entry.status == "QUEUED":
                gone.append((entry.queue_id, entry.sequence))
            session.execute(delete(QueueEntry).where(QueueEntry.id == entry.id))  # never enterable by a guest
            continue
        held = session.scalar(select(QueueEntry).where(QueueEntry.queue_id == entry.queue_id,
                                                       QueueEntry.consumer_id == consumer_id))
        if held is None:
            entry.consumer_id = consumer_id
            continue
        if entry.status == "QUEUED" and (held.status != "QUEUED" or entry.sequence < held.sequence):
            if held.status == "QUEUED":  # the consumer's later place gives way to the guest's
                gone.append((held.queue_id, held.sequence))
            held.sequence, held.status, held.entered_at, held.left_at = (entry.sequence, entry.status,
                                                                         entry.entered_at, None)
        elif entry.status == "QUEUED":
            gone.append((entry.queue_id, entry.sequence))
        session.execute(delete(QueueEntry).where(QueueEntry.id == entry.id))
    session.flush()
    for queue_id, sequence in gone:
        count_change(session.connection(), queue_id, sequence, -1)
    guest.merged_into = consumer_id
    revoke_sessions(session.connection(), events, "upgraded", now, AuthSession.consumer_id == guest_id)
    events.record(session.connection(), ConsumerMerged(organization_id=guest.organization_id, mode=guest.mode,
                                                      guest_id=guest_id, consumer_id=consumer_id))
