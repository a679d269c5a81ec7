"""The queue store's contract (`app.stores.queues.QueueStore`), run against every implementation
available on the current database, through the interface only. Queues have one implementation
for both databases (`GenericQueueStore`): this file runs it on SQLite, and `make test` runs it again
on PostgreSQL. A new implementation joins `IMPLEMENTATIONS` and must pass the same tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, insert

from app.models import Consumer, new_id
from app.security.callers import PendingSession
from app.stores.queues import GenericQueueStore, QueueStore, queue_store_for
from tests.helpers import Actions, TenantActions

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

#: implementation name -> (the databases it serves, its factory)
IMPLEMENTATIONS: dict[str, tuple[frozenset[str], Callable[[], QueueStore]]] = {
    "sql": (frozenset({"sqlite", "postgresql"}), GenericQueueStore),
}


@pytest.fixture(scope="module")
def tenant(app) -> dict:
    client = app.test_client()
    created = Actions(app, client).create_org("Queue store")
    tenant = TenantActions(client, created["keys"]["test"], created["organizationId"])
    experience = client.post("/api/v1/experiences", json={"name": "Drop", "timeZone": "Europe/Paris"},
                             headers={"Authorization": f"Bearer {tenant.sk}"}).json
    return {"organization_id": created["organizationId"], "mode": "test", "experience_id": experience["id"],
            "tenant": tenant}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def store(request, app) -> QueueStore:
    databases, factory = IMPLEMENTATIONS[request.param]
    dialect = app.extensions["usher"].db.engine.dialect.name
    if dialect not in databases:
        pytest.skip(f"{request.param} does not serve {dialect}")
    return factory()


@pytest.fixture
def write(app) -> Callable[[], Iterator[Connection]]:
    return app.extensions["usher"].db.write


def _consumers(connection: Connection, tenant: dict, count: int) -> list[str]:
    ids = [new_id("guest") for _ in range(count)]
    connection.execute(insert(Consumer.__table__), [
        {"id": consumer_id, "organization_id": tenant["organization_id"], "mode": tenant["mode"], "created_at": NOW}
        for consumer_id in ids])
    return ids


def _queue(store: QueueStore, connection: Connection, tenant: dict, **values) -> str:
    queue_id = new_id("queue")
    store.create_queue(connection, {"id": queue_id, "organization_id": tenant["organization_id"],
                                    "mode": tenant["mode"], "experience_id": tenant["experience_id"],
                                    "name": "Main", "created_at": NOW, "next_sequence": 0, **values})
    return queue_id


def _join(store: QueueStore, connection: Connection, queue_id: str, consumer_id: str) -> int:
    """Enter as the service does: take a number, insert, count."""
    sequence = store.take_sequence(connection, queue_id).next_sequence
    assert store.add_entry(connection, queue_id, consumer_id, sequence, NOW)
    store.count_change(connection, queue_id, sequence, +1)
    return sequence


def test_a_queue_reads_back_with_its_experience_zone(store, write, tenant):
    with write() as connection:
        queue_id = _queue(store, connection, tenant, capacity=10, admission="identified")
        queue = store.queue(connection, queue_id)
    assert (queue.id, queue.organization_id, queue.mode, queue.experience_id, queue.name) == (
        queue_id, tenant["organization_id"], "test", tenant["experience_id"], "Main")
    assert (queue.capacity, queue.admission, queue.open_at, queue.close_at) == (10, "identified", None, None)
    assert queue.time_zone == "Europe/Paris"
    with write() as connection:
        assert store.queue(connection, new_id("queue")) is None
        experience = store.experience(connection, tenant["experience_id"])
        assert (experience.organization_id, experience.mode, experience.time_zone) == (
            tenant["organization_id"], "test", "Europe/Paris")
        assert store.experience(connection, new_id("exp")) is None


def test_queues_are_listed_per_tenant_in_id_order_with_keyset_paging(store, write, tenant):
    other = {**tenant, "mode": "live"}
    with write() as connection:
        mine = sorted(_queue(store, connection, tenant) for _ in range(3))
        foreign = _queue(store, connection, {**other, "experience_id": tenant["experience_id"]})
        everything, _ = store.list_queues(connection, tenant["organization_id"], "test", tenant["experience_id"],
                                          1000, None)
        ids = [row.id for row in everything]
        assert set(mine) <= set(ids) and foreign not in ids and ids == sorted(ids)
        first, more = store.list_queues(connection, tenant["organization_id"], "test", None, 1, mine[0])
        assert [row.id for row in first] == [mine[1]] and more
        last, more = store.list_queues(connection, tenant["organization_id"], "test", None, 10, mine[-1])
        assert mine[-1] not in [row.id for row in last]
        none, more = store.list_queues(connection, tenant["organization_id"], "test", new_id("exp"), 10, None)
        assert none == [] and not more


def test_sequence_numbers_are_taken_in_order(store, write, tenant):
    with write() as connection:
        queue_id = _queue(store, connection, tenant, capacity=5)
        taken = [store.take_sequence(connection, queue_id) for _ in range(3)]
        assert [row.next_sequence for row in taken] == [1, 2, 3]  # the number taken, counted from 1
        assert taken[0].organization_id == tenant["organization_id"] and taken[0].capacity == 5
        assert store.take_sequence(connection, new_id("queue")) is None


def test_positions_and_counts_follow_entries(store, write, tenant):
    with write() as connection:
        queue_id = _queue(store, connection, tenant)
        consumers = _consumers(connection, tenant, 4)
        sequences = [_join(store, connection, queue_id, consumer_id) for consumer_id in consumers]
        assert store.queued_count(connection, queue_id) == 4
        assert [store.state(connection, queue_id, c).ahead for c in consumers] == [0, 1, 2, 3]
        entry = store.entry(connection, queue_id, consumers[1])
        assert entry.status == "QUEUED"
        assert store.leave(connection, entry.id, NOW) == sequences[1]
        assert store.leave(connection, entry.id, NOW) is None  # already left: nothing changes
        store.count_change(connection, queue_id, sequences[1], -1)
        assert store.queued_count(connection, queue_id) == 3
        assert store.state(connection, queue_id, consumers[3]).ahead == 2
        left = store.state(connection, queue_id, consumers[1])
        assert (left.status, left.consumer_id, left.queue_id) == ("LEFT", consumers[1], queue_id)
        assert not store.reenter(connection, store.entry(connection, queue_id, consumers[0]).id, 99, NOW)
        back = store.take_sequence(connection, queue_id).next_sequence
        assert store.reenter(connection, entry.id, back, NOW + timedelta(seconds=1))
        store.count_change(connection, queue_id, back, +1)
        assert store.state(connection, queue_id, consumers[1]).ahead == 3  # at the back of the line


def test_the_front_is_admitted_first_come_first_served(store, write, tenant):
    with write() as connection:
        queue_id = _queue(store, connection, tenant)
        consumers = _consumers(connection, tenant, 3)
        sequences = [_join(store, connection, queue_id, consumer_id) for consumer_id in consumers]
        front = store.front(connection, queue_id, 2)
        assert [row.sequence for row in front] == sequences[:2]
        for row in front:
            store.mark_admitted(connection, row.id, NOW)
            store.count_change(connection, queue_id, row.sequence, -1)
        admitted = store.state(connection, queue_id, consumers[0])
        assert admitted.status == "ADMITTED" and admitted.admitted_at is not None
        assert store.state(connection, queue_id, consumers[2]).ahead == 0
        assert [row.sequence for row in store.front(connection, queue_id, 5)] == sequences[2:]
        assert store.queued_count(connection, queue_id) == 1


def test_a_recount_gives_the_counters_the_changes_gave(store, write, tenant):
    with write() as connection:
        queue_id = _queue(store, connection, tenant)
        consumers = _consumers(connection, tenant, 70)  # more than one node of the first level
        for consumer_id in consumers:
            _join(store, connection, queue_id, consumer_id)
        before = [store.state(connection, queue_id, c).ahead for c in consumers]
        store.recount(connection, queue_id)
        assert store.queued_count(connection, queue_id) == 70
        assert [store.state(connection, queue_id, c).ahead for c in consumers] == before == list(range(70))


def test_state_reads_the_queue_without_an_entry_and_none_for_no_queue(store, write, tenant):
    with write() as connection:
        queue_id = _queue(store, connection, tenant)
        (stranger,) = _consumers(connection, tenant, 1)
        row = store.state(connection, queue_id, stranger)
        assert row.organization_id == tenant["organization_id"] and row.consumer_id is None
        assert store.state(connection, new_id("queue"), stranger) is None


def test_state_reads_a_pending_session_liveness_in_the_same_row(store, write, tenant):
    guest = tenant["tenant"].guest()
    session_id, consumer_id = guest["session"]["sessionId"], guest["session"]["consumerId"]
    with write() as connection:
        queue_id = _queue(store, connection, tenant)
        _join(store, connection, queue_id, consumer_id)
        live = PendingSession(session_id, consumer_id, tenant["organization_id"])
        assert store.state(connection, queue_id, consumer_id, live).session_live
        dead = PendingSession(new_id("sess"), consumer_id, tenant["organization_id"])
        assert not store.state(connection, queue_id, consumer_id, dead).session_live


def test_the_app_chooses_its_store_once_for_its_database(app):
    assert isinstance(app.extensions["usher"].stores.queues, GenericQueueStore)
    with pytest.raises(ValueError, match="no queue store"):
        queue_store_for("oracle")
