"""Queues: first come, first served, idempotent enter.

The rules live here; every statement is the app's `QueueStore` (app/stores/queues.py), passed
in by the caller (`Usher.stores.queues`), as the database connection is."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, Row

from app.errors import ApiError
from app.models import new_id
from app.schemas.common import iso_instant
from app.security.callers import PendingSession
from app.services.tenancy import ID_SHAPE
from app.stores.queues import QueueStore, count_change

__all__ = ["admit", "consumer_state", "count_change", "create_queue", "enter", "is_guest", "leave", "list_queues",
           "poll_after", "queue_for_tenant", "queue_status", "queue_view"]


def is_guest(consumer_id: str) -> bool:
    return consumer_id.startswith("guest_")


def queue_status(queue: Any, now: datetime) -> str:
    if queue.open_at is not None and now < queue.open_at:
        return "PENDING"
    if queue.close_at is not None and now >= queue.close_at:
        return "CLOSED"
    return "OPEN"


def poll_after(position: int) -> int:
    """Seconds before a queued consumer should ask again: 2 for the first 50 places, one more per
    further 50 places, at most 60 (from place 2,901 on). Near admission the place changes soon;
    far back a minute changes little, and 100,000 shoppers poll ~1,700 times a second instead of
    20,000 at a flat 5 s."""
    return min(60, 2 + (position - 1) // 50)


def queue_view(store: QueueStore, connection: Connection, queue: Any, now: datetime) -> dict:
    """A queue as `QueueOut` reads it (`queue` as `QueueStore.queue` returns it)."""
    return {"id": queue.id, "name": queue.name, "experience_id": queue.experience_id, "capacity": queue.capacity,
            "admission": queue.admission,
            "open_at": queue.open_at, "close_at": queue.close_at, "time_zone": queue.time_zone,
            "status": queue_status(queue, now), "consumer_count": store.queued_count(connection, queue.id)}


def queue_for_tenant(store: QueueStore, connection: Connection, queue_id: str, organization_id: str,
                     mode: str) -> Row:
    """The tenant's queue, else 404 (another tenant's id is unknown; an id not of our shape is
    refused without asking the database)."""
    queue = store.queue(connection, queue_id) if ID_SHAPE.fullmatch(queue_id) else None
    if queue is None or queue.organization_id != organization_id or queue.mode != mode:
        raise ApiError("not_found", "Queue not found")
    return queue


def list_queues(store: QueueStore, connection: Connection, organization_id: str, mode: str,
                experience_id: str | None, limit: int, starting_after: str | None, now: datetime) -> dict:
    """A page of the tenant's queues (keyset paging on the ULID id)."""
    rows, more = store.list_queues(connection, organization_id, mode, experience_id, limit, starting_after)
    return {"data": [queue_view(store, connection, row, now) for row in rows], "has_more": more}


def create_queue(store: QueueStore, connection: Connection, organization_id: str, mode: str, data: dict,
                 now: datetime) -> SimpleNamespace:
    """A new queue under an experience of the tenant (400 for any other experience); returns
    it as `QueueStore.queue` would read it (its experience's `time_zone` included)."""
    experience_id = data["experience_id"]
    experience = store.experience(connection, experience_id) if ID_SHAPE.fullmatch(experience_id) else None
    if experience is None or experience.organization_id != organization_id or experience.mode != mode:
        raise ApiError("validation_error", details={"experienceId": ["Unknown experience."]})
    values = {"id": new_id("queue"), "organization_id": organization_id, "mode": mode, "created_at": now,
              "next_sequence": 0, "capacity": None, "open_at": None, "close_at": None, **data}
    store.create_queue(connection, values)
    return SimpleNamespace(**values, time_zone=experience.time_zone)


def enter(store: QueueStore, connection: Connection, queue_id: str, consumer_id: str, organization_id: str,
          mode: str, now: datetime) -> dict:
    """Join the back of the queue, or keep the place already held; returns the consumer's state
    (`consumer_state`). Call inside a Core write transaction (`Database.write`): a handful of
    prebuilt statements, the hot path of a drop's second step."""
    queue = store.take_sequence(connection, queue_id)
    if queue is None or queue.organization_id != organization_id or queue.mode != mode:
        raise ApiError("not_found", "Queue not found")
    if queue.admission == "identified" and is_guest(consumer_id):
        raise ApiError("identification_required")
    entry = store.entry(connection, queue_id, consumer_id)
    if entry is None or entry.status == "LEFT":
        status = queue_status(queue, now)
        if status != "OPEN":
            raise ApiError("conflict", f"The queue is {status.lower()}.")
        if queue.capacity is not None and store.queued_count(connection, queue_id) >= queue.capacity:
            raise ApiError("conflict", "The queue is full.")
        if entry is None:
            queued = store.add_entry(connection, queue_id, consumer_id, queue.next_sequence, now)
        else:  # re-entering after leaving: to the back of the line
            queued = store.reenter(connection, entry.id, queue.next_sequence, now)
        if queued:
            store.count_change(connection, queue_id, queue.next_sequence, +1)
    return consumer_state(store, connection, queue_id, consumer_id, organization_id, mode)


def leave(store: QueueStore, connection: Connection, queue_id: str, consumer_id: str, organization_id: str,
          mode: str, now: datetime) -> dict:
    """Give the place up (the consumers behind move forward); leaving again changes nothing.
    Returns the consumer's state. Call inside a write transaction."""
    queue = queue_for_tenant(store, connection, queue_id, organization_id, mode)
    entry = store.entry(connection, queue.id, consumer_id)
    if entry is None:
        raise ApiError("not_found", "You have not entered this queue.")
    if entry.status == "QUEUED":
        # Conditional: an admission (or another leave) that changed the row first wins, and only
        # the change that happened is counted.
        sequence = store.leave(connection, entry.id, now)
        if sequence is not None:
            store.count_change(connection, queue.id, sequence, -1)
    return consumer_state(store, connection, queue.id, consumer_id, organization_id, mode)


def admit(store: QueueStore, connection: Connection, queue_id: str, count: int, now: datetime) -> list[int]:
    """Admit the first `count` queued entries (first come, first served); their sequences. Call
    inside a write transaction, as every change of an entry's status must be (its counters).
    On PostgreSQL the front rows are locked; one that a concurrent leave took meanwhile drops out
    of the locked read, and the next ones are read until `count` are admitted or none is left."""
    admitted: list[int] = []
    while len(admitted) < count:
        rows = store.front(connection, queue_id, count - len(admitted))
        if not rows:
            break
        for entry in rows:
            store.mark_admitted(connection, entry.id, now)
            store.count_change(connection, queue_id, entry.sequence, -1)
            admitted.append(entry.sequence)
    return admitted


def consumer_state(store: QueueStore, connection: Connection, queue_id: str, consumer_id: str,
                   organization_id: str, mode: str, session: PendingSession | None = None) -> dict:
    """The consumer's state in a queue of the tenant, in one query (the protected hot path),
    in wire form: what `QueueConsumerState` writes, key for key. With `session` (the caller's
    token's session, still to be read), the same query reads its liveness: 401 for a dead one,
    before any 404."""
    row = store.state(connection, queue_id, consumer_id, session)
    if session is not None and row is not None:  # no queue row, no reading: the request step reads it
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
