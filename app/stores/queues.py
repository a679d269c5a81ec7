"""The persistence of queues and their entries, behind one interface (`QueueStore`).

The rules (who may enter, when a queue is open or full, what a position is worth) are
`app.services.queues`; this module is every statement they need, prebuilt once. The store is
chosen once per app (`queue_store_for`, in `create_app`) and passed to the services and views
explicitly. Queues have no PostgreSQL-only path: one Core implementation serves both databases
(the counters' upsert is each dialect's `ON CONFLICT`, and the front rows' lock is `FOR UPDATE`,
which SQLite, whose write transactions are serialized, has no need of and does not render).
tests/test_store_queues_contract.py holds any implementation to the interface.

Positions come from counters (`QueueCount`): node n of level l counts the QUEUED entries whose
sequence is in [n * 64**l, (n + 1) * 64**l). The entries ahead of sequence s are the QUEUED
entries of s's own 64-range below s (at most 63 index entries), plus, per level below the top,
the nodes of the same parent before s's node (at most 63 rows each), plus the top level's nodes
before s's (one per 262,144 sequences): at most ~190 index rows at any position in any queue,
where counting the entries ahead read one per entry. Every change of an entry's status or
sequence calls `count_change` in its own transaction, so the counters and the entries agree in
every snapshot: a position read in one statement is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import (
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

from app.models import Experience, Queue, QueueCount, QueueEntry
from app.security.callers import LIVE_SESSION, PendingSession

FANOUT_BITS, LEVELS = 6, 3
FANOUT = 1 << FANOUT_BITS

_QUEUES = Queue.__table__
_ENTRIES = QueueEntry.__table__
_COUNTS = QueueCount.__table__
_EXPERIENCES = Experience.__table__
_Q = _QUEUES.c
_E = _ENTRIES.c


def _span(level: int) -> int:
    return 1 << (FANOUT_BITS * level)


def _upsert(dialect: Any) -> Any:
    statement = dialect.insert(_COUNTS).values([
        {"queue_id": bindparam("queue_id"), "level": level, "node": bindparam(f"node{level}"),
         "queued": bindparam("delta")} for level in range(LEVELS, 0, -1)])  # top level first: one lock order
    return statement.on_conflict_do_update(index_elements=list(_COUNTS.primary_key.columns),
                                           set_={"queued": _COUNTS.c.queued + statement.excluded.queued})


_COUNT_CHANGE = {"postgresql": _upsert(postgresql), "sqlite": _upsert(sqlite)}


def count_change(connection: Connection, queue_id: str, sequence: int, delta: int) -> None:
    """An entry with this sequence became QUEUED (+1) or stopped being QUEUED (-1): one statement,
    in the transaction of the change (the top node is the queue's lock order for counters).
    A function as well as a store method: the guest upgrade moves places in its own transaction."""
    connection.execute(_COUNT_CHANGE[connection.dialect.name],
                       {"queue_id": queue_id, "delta": delta,
                        **{f"node{level}": sequence >> (FANOUT_BITS * level) for level in range(1, LEVELS + 1)}})


# The guest upgrade: the guest's places, queue by queue in id order (the counters of several queues
# are locked in one order), with what each queue admits.
_GUEST_PLACES = (select(_E.id, _E.queue_id, _E.status, _E.sequence, _E.entered_at, _Q.admission)
                 .join(_QUEUES, _Q.id == _E.queue_id).where(_E.consumer_id == bindparam("guest_id"))
                 .order_by(_E.queue_id))
_HELD = select(_E.id, _E.status, _E.sequence).where(_E.queue_id == bindparam("queue_id"),
                                                     _E.consumer_id == bindparam("consumer_id"))
_DELETE_ENTRY = delete(_ENTRIES).where(_E.id == bindparam("entry_id"))
_HAND_OVER = update(_ENTRIES).where(_E.id == bindparam("entry_id")).values(consumer_id=bindparam("consumer_id"))
_TAKE_PLACE = update(_ENTRIES).where(_E.id == bindparam("entry_id")).values(
    sequence=bindparam("sequence"), status=bindparam("status"), entered_at=bindparam("entered_at"), left_at=None)


def move_guest_places(connection: Connection, guest_id: str, consumer_id: str) -> None:
    """The guest upgrade's part of the queues, in the sign-in's transaction: each place of the
    guest goes to the consumer, keeping the earlier place where both queued; a queue that admits
    identified consumers only drops the guest's place. The counters follow (`count_change`)."""
    gone: list[tuple[str, int]] = []  # (queue, sequence) of places no longer QUEUED
    for entry in connection.execute(_GUEST_PLACES, {"guest_id": guest_id}).all():
        if entry.admission == "identified":  # never enterable by a guest
            if entry.status == "QUEUED":
                gone.append((entry.queue_id, entry.sequence))
            connection.execute(_DELETE_ENTRY, {"entry_id": entry.id})
            continue
        held = connection.execute(_HELD, {"queue_id": entry.queue_id, "consumer_id": consumer_id}).first()
        if held is None:
            connection.execute(_HAND_OVER, {"entry_id": entry.id, "consumer_id": consumer_id})
            continue
        connection.execute(_DELETE_ENTRY, {"entry_id": entry.id})
        if entry.status == "QUEUED" and (held.status != "QUEUED" or entry.sequence < held.sequence):
            if held.status == "QUEUED":  # the consumer's later place gives way to the guest's
                gone.append((entry.queue_id, held.sequence))
            connection.execute(_TAKE_PLACE, {"entry_id": held.id, "sequence": entry.sequence, "status": entry.status,
                                             "entered_at": entry.entered_at})
        elif entry.status == "QUEUED":
            gone.append((entry.queue_id, entry.sequence))
    for queue_id, sequence in gone:
        count_change(connection, queue_id, sequence, -1)


_QUEUED = (select(func.coalesce(func.sum(_COUNTS.c.queued), 0))
           .where(_COUNTS.c.queue_id == bindparam("queue_id"), _COUNTS.c.level == LEVELS))

# Takes the next sequence number and, with it, the queue row's lock (PostgreSQL's row lock; SQLite
# write transactions are serialized): arrival order, capacity and the counter agree under
# concurrency. A refusal rolls the transaction back, number included.
_TAKE_SEQUENCE = (update(_QUEUES).where(_Q.id == bindparam("queue_id"))
                  .values(next_sequence=_Q.next_sequence + 1)
                  .returning(_Q.organization_id, _Q.mode, _Q.admission, _Q.open_at,
                             _Q.close_at, _Q.capacity, _Q.next_sequence))
_ENTRY = select(_E.id, _E.status).where(_E.queue_id == bindparam("queue_id"),
                                        _E.consumer_id == bindparam("consumer_id"))
_INSERT_ENTRY = _ENTRIES.insert()
_REENTER = (update(_ENTRIES).where(_E.id == bindparam("entry_id"), _E.status == "LEFT")
            .values(sequence=bindparam("sequence"), status="QUEUED", entered_at=bindparam("now"), left_at=None))
_LEAVE = (update(_ENTRIES).where(_E.id == bindparam("entry_id"), _E.status == "QUEUED")
          .values(status="LEFT", left_at=bindparam("now")).returning(_E.sequence))
# On PostgreSQL the front rows are locked; SQLite renders no FOR UPDATE (its writes are serialized).
_FRONT = (select(_E.id, _E.sequence)
          .where(_E.queue_id == bindparam("queue_id"), _E.status == "QUEUED")
          .order_by(_E.sequence).limit(bindparam("count")).with_for_update())
_ADMIT = update(_ENTRIES).where(_E.id == bindparam("entry_id")).values(status="ADMITTED",
                                                                      admitted_at=bindparam("now"))
_QUEUE_COLUMNS = (_Q.id, _Q.organization_id, _Q.mode, _Q.experience_id, _Q.name, _Q.capacity, _Q.admission,
                  _Q.open_at, _Q.close_at)
_QUEUE_WITH_ZONE = (select(*_QUEUE_COLUMNS, _EXPERIENCES.c.time_zone)
                    .select_from(_QUEUES.outerjoin(_EXPERIENCES, _EXPERIENCES.c.id == _Q.experience_id)))
_QUEUE = _QUEUE_WITH_ZONE.where(_Q.id == bindparam("queue_id"))
_EXPERIENCE = select(_EXPERIENCES.c.id, _EXPERIENCES.c.organization_id, _EXPERIENCES.c.mode,
                     _EXPERIENCES.c.time_zone).where(_EXPERIENCES.c.id == bindparam("experience_id"))
_AHEAD = _ENTRIES.alias("ahead")


def _ahead() -> Any:
    """The QUEUED entries ahead of the joined entry, from at most ~190 index rows (see FANOUT_BITS)."""
    mine = _E.sequence
    total: Any = (select(func.count()).select_from(_AHEAD)
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


STATE_QUERY = (
    select(_Q.organization_id, _Q.mode, _E.queue_id, _E.consumer_id, _E.status, _E.entered_at, _E.admitted_at,
           _ahead().label("ahead"))
    .select_from(_QUEUES.outerjoin(_ENTRIES, (_E.queue_id == _Q.id) & (_E.consumer_id == bindparam("consumer_id"))))
    .where(_Q.id == bindparam("queue_id")))
_STATE_AND_SESSION_QUERY = STATE_QUERY.add_columns(LIVE_SESSION)


class QueueStore(Protocol):
    """Every read and write of queues, entries and their counters. Each method runs on the
    caller's connection, inside the caller's transaction: the service decides where a
    transaction starts and ends, the store what it says."""

    def queue(self, connection: Connection, queue_id: str) -> Row | None:
        """The queue (its columns and its experience's `time_zone`), or None."""

    def experience(self, connection: Connection, experience_id: str) -> Row | None:
        """An experience's id, organization_id, mode and time_zone, or None."""

    def list_queues(self, connection: Connection, organization_id: str, mode: str, experience_id: str | None,
                    limit: int, starting_after: str | None) -> tuple[list[Row], bool]:
        """A page of the tenant's queues in id order (as `queue`), and whether more follow."""

    def create_queue(self, connection: Connection, values: dict[str, Any]) -> None:
        """Insert a queue (every column given, `next_sequence` included)."""

    def queued_count(self, connection: Connection, queue_id: str) -> int:
        """Consumers queued now."""

    def take_sequence(self, connection: Connection, queue_id: str) -> Row | None:
        """Take the queue's next sequence number (and its lock): organization_id, mode,
        admission, open_at, close_at, capacity and the number taken (`next_sequence`)."""

    def entry(self, connection: Connection, queue_id: str, consumer_id: str) -> Row | None:
        """The consumer's entry in the queue (id, status), or None."""

    def add_entry(self, connection: Connection, queue_id: str, consumer_id: str, sequence: int,
                  now: datetime) -> bool:
        """A new QUEUED entry; whether it was inserted."""

    def reenter(self, connection: Connection, entry_id: int, sequence: int, now: datetime) -> bool:
        """A LEFT entry QUEUED again at `sequence`; whether it changed."""

    def leave(self, connection: Connection, entry_id: int, now: datetime) -> int | None:
        """A QUEUED entry LEFT; its sequence if it changed (None: something else changed it first)."""

    def front(self, connection: Connection, queue_id: str, count: int) -> Sequence[Row]:
        """Up to `count` QUEUED entries (id, sequence) from the front, locked where the database locks rows."""

    def mark_admitted(self, connection: Connection, entry_id: int, now: datetime) -> None:
        """An entry ADMITTED."""

    def count_change(self, connection: Connection, queue_id: str, sequence: int, delta: int) -> None:
        """The counters of `sequence`'s nodes moved by `delta` (see the module's docstring)."""

    def recount(self, connection: Connection, queue_id: str) -> None:
        """The queue's counters made again from its entries (after a bulk load)."""

    def state(self, connection: Connection, queue_id: str, consumer_id: str,
              session: PendingSession | None = None) -> Row | None:
        """One row: the queue's organization_id and mode, the consumer's entry (queue_id,
        consumer_id, status, entered_at, admitted_at: None when not entered) and `ahead`, the
        QUEUED entries before it; with `session`, also `session_live`. None: no such queue."""


class GenericQueueStore:
    """The Core implementation, for SQLite and PostgreSQL alike."""

    def queue(self, connection: Connection, queue_id: str) -> Row | None:
        return connection.execute(_QUEUE, {"queue_id": queue_id}).first()

    def experience(self, connection: Connection, experience_id: str) -> Row | None:
        return connection.execute(_EXPERIENCE, {"experience_id": experience_id}).first()

    def list_queues(self, connection: Connection, organization_id: str, mode: str, experience_id: str | None,
                    limit: int, starting_after: str | None) -> tuple[list[Row], bool]:
        query = _QUEUE_WITH_ZONE.where(_Q.organization_id == organization_id, _Q.mode == mode)
        if experience_id:
            query = query.where(_Q.experience_id == experience_id)
        if starting_after:
            query = query.where(_Q.id > starting_after)
        rows = list(connection.execute(query.order_by(_Q.id).limit(limit + 1)))
        return rows[:limit], len(rows) > limit

    def create_queue(self, connection: Connection, values: dict[str, Any]) -> None:
        connection.execute(insert(_QUEUES), values)

    def queued_count(self, connection: Connection, queue_id: str) -> int:
        return connection.execute(_QUEUED, {"queue_id": queue_id}).scalar_one()

    def take_sequence(self, connection: Connection, queue_id: str) -> Row | None:
        return connection.execute(_TAKE_SEQUENCE, {"queue_id": queue_id}).first()

    def entry(self, connection: Connection, queue_id: str, consumer_id: str) -> Row | None:
        return connection.execute(_ENTRY, {"queue_id": queue_id, "consumer_id": consumer_id}).first()

    def add_entry(self, connection: Connection, queue_id: str, consumer_id: str, sequence: int,
                  now: datetime) -> bool:
        return bool(connection.execute(_INSERT_ENTRY, {"queue_id": queue_id, "consumer_id": consumer_id,
                                                        "sequence": sequence, "status": "QUEUED",
                                                        "entered_at": now}).rowcount)

    def reenter(self, connection: Connection, entry_id: int, sequence: int, now: datetime) -> bool:
        return bool(connection.execute(_REENTER, {"entry_id": entry_id, "sequence": sequence, "now": now}).rowcount)

    def leave(self, connection: Connection, entry_id: int, now: datetime) -> int | None:
        left = connection.execute(_LEAVE, {"entry_id": entry_id, "now": now}).first()
        return None if left is None else left.sequence

    def front(self, connection: Connection, queue_id: str, count: int) -> Sequence[Row]:
        return connection.execute(_FRONT, {"queue_id": queue_id, "count": count}).all()

    def mark_admitted(self, connection: Connection, entry_id: int, now: datetime) -> None:
        connection.execute(_ADMIT, {"entry_id": entry_id, "now": now})

    def count_change(self, connection: Connection, queue_id: str, sequence: int, delta: int) -> None:
        count_change(connection, queue_id, sequence, delta)

    def recount(self, connection: Connection, queue_id: str) -> None:
        connection.execute(delete(_COUNTS).where(_COUNTS.c.queue_id == queue_id))
        for level in range(1, LEVELS + 1):
            node = _E.sequence // literal_column(str(_span(level)), Integer)  # one expression in GROUP BY
            connection.execute(insert(_COUNTS).from_select(
                ["queue_id", "level", "node", "queued"],
                select(_E.queue_id, literal_column(str(level), Integer), node, func.count())
                .where(_E.queue_id == queue_id, _E.status == "QUEUED")
                .group_by(_E.queue_id, node)))

    def state(self, connection: Connection, queue_id: str, consumer_id: str,
              session: PendingSession | None = None) -> Row | None:
        params = {"queue_id": queue_id, "consumer_id": consumer_id}
        if session is None:
            return connection.execute(STATE_QUERY, params).first()
        return connection.execute(_STATE_AND_SESSION_QUERY, {**params, **session.params()}).first()


def queue_store_for(dialect: str) -> QueueStore:
    """The app's queue store for its database (`create_app` calls this once)."""
    if dialect not in _COUNT_CHANGE:
        raise ValueError(f"no queue store for the {dialect!r} database")
    return GenericQueueStore()
