"""Queues: first come, first served, idempotent enter."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Row,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.errors import ApiError
from app.models import Queue, QueueCount, QueueEntry
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
_COUNTS = QueueCount.__table__

# Positions from counters (`QueueCount`): node n of level l counts the QUEUED entries whose
# sequence is in [n * 64**l, (n + 1) * 64**l). The entries ahead of sequence s are the QUEUED
# entries of s's own 64-range below s (at most 63 index entries), plus, per level below the top,
# the nodes of the same parent before s's node (at most 63 rows each), plus the top level's nodes
# before s's (one per 262,144 sequences): at most ~190 index rows at any position in any queue, where
# counting the entries ahead read one per entry. Every change of an entry's status or sequence
# calls `count_change` in its own transaction, so the counters and the entries agree in every
# snapshot: a position read in one statement is exact.
FANOUT_BITS, LEVELS = 6, 3
FANOUT = 1 << FANOUT_BITS


def _span(level: int) -> int:
    return 1 << (FANOUT_BITS * level)


def _upsert(dialect):
    statement = dialect.insert(_COUNTS).values([
        {"queue_id": bindparam("queue_id"), "level": level, "node": bindparam(f"node{level}"),
         "queued": bindparam("delta")} for level in range(LEVELS, 0, -1)])  # top level first: one lock order
    return statement.on_conflict_do_update(index_elements=list(_COUNTS.primary_key.columns),
                                           set_={"queued": _COUNTS.c.queued + statement.excluded.queued})


_COUNT_CHANGE = {"postgresql": _upsert(postgresql), "sqlite": _upsert(sqlite)}


def count_change(connection: Connection, queue_id: str, sequence: int, delta: int) -> None:
    """An entry with this sequence became QUEUED (+1) or stopped being QUEUED (-1): one statement,
    in the transaction of the change (the top node is the queue's lock order for counters)."""
    connection.execute(_COUNT_CHANGE[connection.dialect.name],
                       {"queue_id": queue_id, "delta": delta,
                        **{f"node{level}": sequence >> (FANOUT_BITS * level) for level in range(1, LEVELS + 1)}})


def recount(connection: Connection, queue_id: str) -> None:
    """A queue's counters made again from its entries: after entries were loaded in bulk (the
    bench), as the migration makes them for the queues already there."""
    connection.execute(delete(_COUNTS).where(_COUNTS.c.queue_id == queue_id))
    for level in range(1, LEVELS + 1):
        node = _ENTRIES.c.sequence // literal_column(str(_span(level)), Integer)  # one expression in GROUP BY
        connection.execute(insert(_COUNTS).from_select(
            ["queue_id", "level", "node", "queued"],
            select(_ENTRIES.c.queue_id, literal_column(str(level), Integer), node, func.count())
            .where(_ENTRIES.c.queue_id == queue_id, _ENTRIES.c.status == "QUEUED")
            .group_by(_ENTRIES.c.queue_id, node)))


_QUEUED = (select(func.coalesce(func.sum(_COUNTS.c.queued), 0))
           .where(_COUNTS.c.queue_id == bindparam("queue_id"), _COUNTS.c.level == LEVELS))


def queued_count(connection: Connection | Session, queue_id: str) -> int:
    """Consumers queued now: the top level's counters (one row per 262,144 sequences)."""
    return connection.execute(_QUEUED, {"queue_id": queue_id}).scalar_one()


def poll_after(position: int) -> int:
    """Seconds before a queued consumer should ask again: 2 for the first 50 places, one more per
    further 50 places, at most 60 (from place 2,901 on). Near admission the place changes soon;
    far back a minute changes little, and 100,000 shoppers poll ~1,700 times a second instead of
    20,000 at a flat 5 s."""
    return min(60, 2 + (position - 1) // 50)


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
_REENTER = (update(_ENTRIES).where(_ENTRIES.c.id == bindparam("entry_id"), _ENTRIES.c.status == "LEFT")
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
            queued = connection.execute(_INSERT_ENTRY, {"queue_id": queue_id, "consumer_id": consumer_id,
                                                        "sequence": queue.next_sequence, "status": "QUEUED",
                                                        "entered_at": now}).rowcount
        else:  # re-entering after leaving: to the back of the line
            queued = connection.execute(_REENTER, {"entry_id": entry.id, "sequence": queue.next_sequence,
                                                   "now": now}).rowcount
        if queued:
            count_change(connection, queue_id, queue.next_sequence, +1)
    return consumer_state(connection, queue_id, consumer_id, organization_id, mode)


def leave(session: Session, queue: Queue, consumer_id: str, now: datetime) -> None:
    entry = find_entry(session, queue.id, consumer_id)
    if entry is None:
        raise ApiError("not_found", "You have not entered this queue.")
    if entry.status == "QUEUED":
        # Conditional: an admission (or another leave) that changed the row first wins, and only
        # the change that happened is counted.
        left = session.connection().execute(_LEAVE, {"entry_id": entry.id, "now": now}).first()
        if left is not None:
            count_change(session.connection(), queue.id, left.sequence, -1)


_LEAVE = (update(_ENTRIES).where(_ENTRIES.c.id == bindparam("entry_id"), _ENTRIES.c.status == "QUEUED")
          .values(status="LEFT", left_at=bindparam("now")).returning(_ENTRIES.c.sequence))


_FRONT = (select(_ENTRIES.c.id, _ENTRIES.c.sequence)
          .where(_ENTRIES.c.queue_id == bindparam("queue_id"), _ENTRIES.c.status == "QUEUED")
          .order_by(_ENTRIES.c.sequence).limit(bindparam("count")))


def admit(connection: Connection, queue_id: str, count: int, now: datetime) -> list[int]:
    """Admit the first `count` queued entries (first come, first served); their sequences. Call
    inside a write transaction, as every change of an entry's status must be (its counters).
    On PostgreSQL the front rows are locked; one that a concurrent leave took meanwhile drops out
    of the locked read, and the next ones are read until `count` are admitted or none is left."""
    front = _FRONT.with_for_update() if connection.dialect.name == "postgresql" else _FRONT
    admitted: list[int] = []
    while len(admitted) < count:
        rows = connection.execute(front, {"queue_id": queue_id, "count": count - len(admitted)}).all()
        if not rows:
            break
        for entry in rows:
            connection.execute(_ADMIT, {"entry_id": entry.id, "now": now})
            count_change(connection, queue_id, entry.sequence, -1)
            admitted.append(entry.sequence)
    return admitted


_ADMIT = update(_ENTRIES).where(_ENTRIES.c.id == bindparam("entry_id")).values(status="ADMITTED",
                                                                              admitted_at=bindparam("now"))


_Q = Queue.__table__.c
_E = QueueEntry.__table__.c
_AHEAD = QueueEntry.__table__.alias("ahead")


def _ahead() -> ColumnElement[Any]:
    """The QUEUED entries ahead of the joined entry, from at most ~190 index rows (see FANOUT_BITS)."""
    mine = _E.sequence
    total: ColumnElement[Any] = (select(func.count()).select_from(_AHEAD)
             .where(_AHEAD.c.queue_id == _E.queue_id, _AHEAD.c.status == "QUEUED",
                    _AHEAD.c.sequence >= (mine // FANOUT) * FANOUT, _AHEAD.c.sequence < mine)
             .scalar_subquery())
    for level in range(1, LEVELS + 1):
        counts = _COUNTS.alias(f"level{level}")
        node = mine // _span(level)
        first = (mine // _span(level + 1)) * FANOUT if level < LEVELS else 0
        total = total + (select(func.coalesce(func.sum(counts.c.queued), 0))
                         .where(counts.c.queue_id == _E.queue_id, counts.c.level == level,
                                counts.c.node >= first, counts.c.node < node)
                         .scalar_subquery())
    return total


_STATE_QUERY = (
    select(_Q.organization_id, _Q.mode, _E.queue_id, _E.consumer_id, _E.status, _E.entered_at, _E.admitted_at,
           _ahead().label("ahead"))
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
    position = row.ahead + 1 if row.status == "QUEUED" else None
    return {"queueId": row.queue_id, "consumerId": row.consumer_id, "status": row.status,
            "position": position, "enteredAt": iso_instant(row.entered_at),
            "admittedAt": None if row.admitted_at is None else iso_instant(row.admitted_at),
            "admissionToken": None, "denyReason": None,
            "pollAfter": None if position is None else poll_after(position)}
