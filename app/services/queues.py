"""Queues: first come, first served, idempotent enter."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, bindparam, func, select, update
from sqlalchemy.orm import Session

from app.errors import ApiError
from app.models import Queue, QueueEntry
from app.schemas.common import iso_instant


def is_guest(consumer_id: str) -> bool:
    return consumer_id.startswith("guest_")


def queue_status(queue: Queue, now: datetime) -> str:
    if queue.open_at is not None and now < queue.open_at:
        return "PENDING"
    if queue.close_at is not None and now >= queue.close_at:
        return "CLOSED"
    return "OPEN"


def queued_count(session: Session, queue_id: str) -> int:
    return session.execute(select(func.count()).select_from(QueueEntry)
                           .where(QueueEntry.queue_id == queue_id, QueueEntry.status == "QUEUED")).scalar_one()


def queue_view(session: Session, queue: Queue, time_zone: str | None, now: datetime) -> dict:
    return {"id": queue.id, "name": queue.name, "experience_id": queue.experience_id, "capacity": queue.capacity,
            "admission": queue.admission,
            "open_at": queue.open_at, "close_at": queue.close_at, "time_zone": time_zone,
            "status": queue_status(queue, now), "consumer_count": queued_count(session, queue.id)}


def find_entry(session: Session, queue_id: str, consumer_id: str) -> QueueEntry | None:
    return session.scalar(select(QueueEntry).where(QueueEntry.queue_id == queue_id,
                                                   QueueEntry.consumer_id == consumer_id))


def enter(session: Session, queue: Queue, consumer_id: str, now: datetime) -> QueueEntry:
    """Join the back of the queue, or return the place already held. Call inside a transaction.

    The queue row is locked first (FOR UPDATE on PostgreSQL; SQLite write transactions are
    serialized), so arrival order, capacity and the sequence counter agree under concurrency.
    """
    if queue.admission == "identified" and is_guest(consumer_id):
        raise ApiError("identification_required")
    session.execute(select(Queue.id).where(Queue.id == queue.id).with_for_update())
    entry = find_entry(session, queue.id, consumer_id)
    if entry is not None and entry.status != "LEFT":
        return entry
    status = queue_status(queue, now)
    if status != "OPEN":
        raise ApiError("conflict", f"The queue is {status.lower()}.")
    if queue.capacity is not None and queued_count(session, queue.id) >= queue.capacity:
        raise ApiError("conflict", "The queue is full.")
    sequence = session.execute(update(Queue).where(Queue.id == queue.id).values(next_sequence=Queue.next_sequence + 1)
                               .returning(Queue.next_sequence)).scalar_one()
    if entry is None:
        entry = QueueEntry(queue_id=queue.id, consumer_id=consumer_id, sequence=sequence, status="QUEUED",
                           entered_at=now)
        session.add(entry)
    else:  # re-entering after leaving: to the back of the line
        entry.sequence, entry.status, entry.entered_at, entry.left_at = sequence, "QUEUED", now, None
    session.flush()
    return entry


def leave(session: Session, queue: Queue, consumer_id: str, now: datetime) -> QueueEntry:
    entry = find_entry(session, queue.id, consumer_id)
    if entry is None:
        raise ApiError("not_found", "You have not entered this queue.")
    if entry.status == "QUEUED":
        entry.status, entry.left_at = "LEFT", now
        session.flush()
    return entry


_Q = Queue.__table__.c
_E = QueueEntry.__table__.c
_AHEAD = QueueEntry.__table__.alias("ahead")
_STATE_QUERY = (
    select(_Q.organization_id, _Q.mode, _E.queue_id, _E.consumer_id, _E.status, _E.entered_at, _E.admitted_at,
           select(func.count()).select_from(_AHEAD)
           .where(_AHEAD.c.queue_id == _E.queue_id, _AHEAD.c.status == "QUEUED", _AHEAD.c.sequence < _E.sequence)
           .scalar_subquery().label("ahead"))
    .select_from(Queue.__table__.outerjoin(QueueEntry.__table__, (_E.queue_id == _Q.id)
                                           & (_E.consumer_id == bindparam("consumer_id"))))
    .where(_Q.id == bindparam("queue_id")))


def consumer_state(connection: Connection, queue_id: str, consumer_id: str, organization_id: str, mode: str) -> dict:
    """The consumer's state in a queue of the tenant, in one query (the protected hot path),
    in wire form: what `QueueConsumerState` writes, key for key."""
    row = connection.execute(_STATE_QUERY, {"queue_id": queue_id, "consumer_id": consumer_id}).first()
    if row is None or row.organization_id != organization_id or row.mode != mode:
        raise ApiError("not_found", "Queue not found")
    if row.consumer_id is None:
        raise ApiError("not_found", "You have not entered this queue.")
    return {"queueId": row.queue_id, "consumerId": row.consumer_id, "status": row.status,
            "position": row.ahead + 1 if row.status == "QUEUED" else None, "enteredAt": iso_instant(row.entered_at),
            "admittedAt": None if row.admitted_at is None else iso_instant(row.admitted_at),
            "admissionToken": None, "denyReason": None}
