"""Queues: first come, first served, idempotent enter."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Row, bindparam, func, select, update
from sqlalchemy.orm import Session

from app.errors import ApiError
from app.models import Queue, QueueEntry
from app.schemas.common import iso_instant
from app.security.callers import LIVE_SESSION, PendingSession


def is_guest(consumer_id: str) -> bool:
    return consumer_id.startswith("guest_")


def queue_status(queue: Queue | Row, now: datetime) -> str:
    if queue.open_at is not None and now < queue.open_at:
        return "PENDING"
    if queue.close_at is not None and now >= queue.close_at:
        return "CLOSED"
    return "OPEN"


_QUEUES = Queue.__table__
_ENTRIES = QueueEntry.__table__
_QUEUED = (select(func.count()).select_from(_ENTRIES)
           .where(_ENTRIES.c.queue_id == bindparam("queue_id"), _ENTRIES.c.status == "QUEUED"))


def queued_count(connection: Connection | Session, queue_id: str) -> int:
    return connection.execute(_QUEUED, {"queue_id": queue_id}).scalar_one()


def queue_view(session: Session, queue: Queue, time_zone: str | None, now: datetime) -> dict:
    return {"id": queue.id, "name": queue.name, "experience_id": queue.experience_id, "capacity": queue.capacity,
            "admission": queue.admission,
            "open_at": queue.open_at, "close_at": queue.close_at, "time_zone": time_zone,
            "status": queue_status(queue, now), "consumer_count": queued_count(session, queue.id)}


def find_entry(session: Session, queue_id: str, consumer_id: str) -> QueueEntry | None:
    return session.scalar(select(QueueEntry).where(QueueEntry.queue_id == queue_id,
                                                   QueueEntry.consumer_id == consumer_id))


# Takes the next sequence number and, with it, the queue row's lock (PostgreSQL's row lock; SQLite
# write transactions are serialized): arrival order, capacity and the counter agree under
# concurrency. A refusal rolls the transaction back, number included.
_TAKE_SEQUENCE = (update(_QUEUES).where(_QUEUES.c.id == bindparam("queue_id"))
                  .values(next_sequence=_QUEUES.c.next_sequence + 1)
                  .returning(_QUEUES.c.organization_id, _QUEUES.c.mode, _QUEUES.c.admission, _QUEUES.c.open_at,
                             _QUEUES.c.close_at, _QUEUES.c.capacity, _QUEUES.c.next_sequence))
_ENTRY = select(_ENTRIES.c.id, _ENTRIES.c.status).where(_ENTRIES.c.queue_id == bindparam("queue_id"),
                                                         _ENTRIES.c.consumer_id == bindparam("consumer_id"))
_INSERT_ENTRY = _ENTRIES.insert()
_REENTER = (update(_ENTRIES).where(_ENTRIES.c.id == bindparam("entry_id"))
            .values(sequence=bindparam("sequence"), status="QUEUED", entered_at=bindparam("now"), left_at=None))


def enter(connection: Connection, queue_id: str, consumer_id: str, organization_id: str, mode: str,
          now: datetime) -> dict:
    """Join the back of the queue, or keep the place already held; returns the consumer's state
    (`consumer_state`). Call inside a Core write transaction (`Database.write`): a handful of
    prebuilt statements, the hot path of a drop's second step."""
    queue = connection.execute(_TAKE_SEQUENCE, {"queue_id": queue_id}).first()
    if queue is None or queue.organization_id != organization_id or queue.mode != mode:
        raise ApiError("not_found", "Queue not found")
    if queue.admission == "identified" and is_guest(consumer_id):
        raise ApiError("identification_required")
    entry = connection.execute(_ENTRY, {"queue_id": queue_id, "consumer_id": consumer_id}).first()
    if entry is None or entry.status == "LEFT":
        status = queue_status(queue, now)
        if status != "OPEN":
            raise ApiError("conflict", f"The queue is {status.lower()}.")
        if queue.capacity is not None and queued_count(connection, queue_id) >= queue.capacity:
            raise ApiError("conflict", "The queue is full.")
        if entry is None:
            connection.execute(_INSERT_ENTRY, {"queue_id": queue_id, "consumer_id": consumer_id,
                                               "sequence": queue.next_sequence, "status": "QUEUED",
                                               "entered_at": now})
        else:  # re-entering after leaving: to the back of the line
            connection.execute(_REENTER, {"entry_id": entry.id, "sequence": queue.next_sequence, "now": now})
    return consumer_state(connection, queue_id, consumer_id, organization_id, mode)


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


_STATE_AND_SESSION_QUERY = _STATE_QUERY.add_columns(LIVE_SESSION)


def consumer_state(connection: Connection, queue_id: str, consumer_id: str, organization_id: str, mode: str,
                   session: PendingSession | None = None) -> dict:
    """The consumer's state in a queue of the tenant, in one query (the protected hot path),
    in wire form: what `QueueConsumerState` writes, key for key. With `session` (the caller's
    token's session, still to be read), the same query reads its liveness: 401 for a dead one,
    before any 404."""
    params = {"queue_id": queue_id, "consumer_id": consumer_id}
    if session is None:
        row = connection.execute(_STATE_QUERY, params).first()
    else:
        row = connection.execute(_STATE_AND_SESSION_QUERY, {**params, **session.params()}).first()
        if row is not None:  # no queue row, no reading: the decorator reads it (`CallerResolver.settle`)
            session.confirm(row.session_live)
    if row is None or row.organization_id != organization_id or row.mode != mode:
        raise ApiError("not_found", "Queue not found")
    if row.consumer_id is None:
        raise ApiError("not_found", "You have not entered this queue.")
    return {"queueId": row.queue_id, "consumerId": row.consumer_id, "status": row.status,
            "position": row.ahead + 1 if row.status == "QUEUED" else None, "enteredAt": iso_instant(row.entered_at),
            "admittedAt": None if row.admitted_at is None else iso_instant(row.admitted_at),
            "admissionToken": None, "denyReason": None}
