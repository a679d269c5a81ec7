"""Guest upgrade: a guest who signs in becomes (merges into) the identified consumer.

The sign-in store (`app.stores.signin`) calls it inside the sign-in's transaction, after ending
the guest's session and before ending its other ones; the store records the events."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.models import Consumer, Queue, QueueEntry
from app.services.queues import count_change


def merge_guest(session: Session, guest_id: str, consumer_id: str) -> None:
    """Move the guest's queue places to the consumer (keeping the earlier place where both
    queued) and set `merged_into` on the guest (flushed by the caller)."""
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
