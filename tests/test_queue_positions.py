"""Queue positions from counters (issue 29): exact under concurrent enters, leaves and admissions,
through a guest upgrade and a migration, at a cost that does not grow with the queue."""

from __future__ import annotations

import re
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, func, select, text

from app import create_app
from app.cli import alembic_config
from app.models import QueueCount, QueueEntry
from app.services import queues
from app.stores import queues as queue_store
from tests.conftest import APP_SECRET
from tests.helpers import Actions, TenantActions, bearer, consumer, publishable
from tests.live import http
from tests.test_otp import Otp
from tests.test_sessions import race


def counted_positions(db, queue_id: str) -> dict[str, int]:
    """The contract, by counting: 1 + the QUEUED entries with a smaller sequence."""
    with db.sessionmaker() as session:
        ordered = session.scalars(select(QueueEntry.consumer_id)
                                  .where(QueueEntry.queue_id == queue_id, QueueEntry.status == "QUEUED")
                                  .order_by(QueueEntry.sequence)).all()
    return {consumer_id: place for place, consumer_id in enumerate(ordered, 1)}


def recounted(db, queue_id: str) -> dict[tuple[int, int], int]:
    """The counters as they must be, from the entries (zero nodes left out)."""
    with db.sessionmaker() as session:
        sequences = session.scalars(select(QueueEntry.sequence).where(QueueEntry.queue_id == queue_id,
                                                                      QueueEntry.status == "QUEUED")).all()
    expected: dict[tuple[int, int], int] = {}
    for sequence in sequences:
        for level in range(1, queue_store.LEVELS + 1):
            key = (level, sequence >> (queue_store.FANOUT_BITS * level))
            expected[key] = expected.get(key, 0) + 1
    return expected


def stored_counts(db, queue_id: str) -> dict[tuple[int, int], int]:
    with db.sessionmaker() as session:
        rows = session.execute(select(QueueCount.level, QueueCount.node, QueueCount.queued)
                               .where(QueueCount.queue_id == queue_id)).all()
    return {(level, node): queued for level, node, queued in rows if queued}


def assert_exact(db, queue_id: str, states: dict[str, dict]) -> None:
    """Every consumer's answered state agrees with the counting query, and the counters with the entries."""
    expected = counted_positions(db, queue_id)
    assert {c: s["position"] for c, s in states.items() if s["status"] == "QUEUED"} == expected
    assert all(s["position"] is None and s["pollAfter"] is None for s in states.values() if s["status"] != "QUEUED")
    assert all(s["pollAfter"] == queues.poll_after(s["position"]) for s in states.values() if s["status"] == "QUEUED")
    assert stored_counts(db, queue_id) == recounted(db, queue_id)


@pytest.mark.gunicorn
def test_positions_stay_exact_under_concurrent_enters_leaves_and_admissions(live_server, actions, client, app):
    db = app.extensions["usher"].db
    tenant = TenantActions(client, actions.create_org()["keys"]["test"])
    queue = tenant.queue()
    base = f"{live_server.url}/api/v1/queues/{queue['id']}"
    guests = [http("POST", live_server.url + "/api/v1/auth/guest", publishable(tenant.pk)).body for _ in range(70)]
    token_of = {g["session"]["consumerId"]: g["accessToken"] for g in guests}
    tokens = iter(g["accessToken"] for g in guests[:50])
    lock = threading.Lock()

    def enter():
        with lock:
            token = next(tokens)
        return http("POST", f"{base}/enter", consumer(tenant.pk, token))

    entered = race(50, enter)
    assert [r.status for r in entered] == [200] * 50, [r.body for r in entered if r.status != 200]
    assert sorted(r.body["position"] for r in entered) == list(range(1, 51))

    def states() -> dict[str, dict]:
        return {c: http("GET", f"{base}/status", consumer(tenant.pk, t)).body for c, t in token_of.items()
                if c in {r.body["consumerId"] for r in entered} | set(late)}

    late: list[str] = []
    assert_exact(db, queue["id"], states())
    order = sorted(counted_positions(db, queue["id"]), key=counted_positions(db, queue["id"]).get)
    # Leaves from the front, the middle and the back, five admissions at the front and twenty new
    # enters, all at once.
    leaving = [order[0], order[24], order[49]]
    late = [g["session"]["consumerId"] for g in guests[50:]]
    calls = ([lambda c=c: http("POST", f"{base}/leave", consumer(tenant.pk, token_of[c])) for c in leaving]
             + [lambda c=c: http("POST", f"{base}/enter", consumer(tenant.pk, token_of[c])) for c in late]
             + [lambda: _admit(db, queue["id"], 5)])
    outcomes = together(calls)
    assert all(o.status == 200 for o in outcomes[:-1]), [o.body for o in outcomes]
    assert len(outcomes[-1]) == 5
    after = states()
    assert_exact(db, queue["id"], after)
    # The front one left or was admitted, whichever committed first; never both, never counted twice.
    assert after[leaving[0]]["status"] in ("LEFT", "ADMITTED")
    assert [after[c]["status"] for c in leaving[1:]] == ["LEFT"] * 2
    assert sum(s["status"] == "ADMITTED" for s in after.values()) == 5
    left = sum(s["status"] == "LEFT" for s in after.values())
    assert len(counted_positions(db, queue["id"])) == 70 - left - 5
    assert http("GET", base, publishable(tenant.pk)).body["consumerCount"] == 70 - left - 5
    # A consumer who left comes back: to the back of the line, counted once.
    back = http("POST", f"{base}/enter", consumer(tenant.pk, token_of[leaving[1]])).body
    assert back["position"] == 70 - left - 5 + 1 and back["pollAfter"] == 3
    assert_exact(db, queue["id"], states())


def together(calls: list) -> list:
    """Run each call in a thread of its own, all released at the same instant; their results in order."""
    barrier = threading.Barrier(len(calls))

    def go(call):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(go, calls))


def _admit(db, queue_id: str, count: int) -> list[int]:
    with db.write() as connection:
        return queues.admit(queue_store.GenericQueueStore(), connection, queue_id, count, datetime.now(UTC))


def test_a_guest_upgrade_keeps_the_earlier_place_and_the_counts_exact(tenant, app):
    db = app.extensions["usher"].db
    otp = Otp(tenant)
    queue = tenant.queue()
    path = f"/api/v1/queues/{queue['id']}"
    first, upgrading, third = (tenant.guest() for _ in range(3))
    otp.request(email="held@example.com")
    spent = otp.last_code("held@example.com")
    held = otp.verify(email="held@example.com", code=spent).json
    for who in (first, upgrading, third, held):
        assert tenant.client.post(f"{path}/enter", headers=consumer(tenant.pk, who["accessToken"])).status_code == 200
    assert tenant.status(queue["id"], held["accessToken"]).json["position"] == 4
    otp.settings(otpCooldown=1)
    otp.cooldown_passes("held@example.com")
    again = otp.request(email="held@example.com")
    assert again.status_code == 202, again.json
    code = next(re.search(r"\b(\d{6,10})\b", m["body"]).group(1) for m in otp.outbox()
                if m["to"] == "held@example.com" and spent not in m["body"])
    merged = otp.verify(headers=bearer(upgrading["accessToken"]), email="held@example.com", code=code).json
    assert "session" in merged, merged
    assert merged["session"]["consumerId"] == held["session"]["consumerId"]
    # The consumer keeps the guest's earlier place (2); its own later place (4) is gone.
    states = {who["session"]["consumerId"]: tenant.status(queue["id"], token).json
              for who, token in ((first, first["accessToken"]), (third, third["accessToken"]),
                                 (held, merged["accessToken"]))}
    assert [s["position"] for s in states.values()] == [1, 3, 2]
    assert_exact(db, queue["id"], states)
    assert tenant.client.get(path, headers=publishable(tenant.pk)).json["consumerCount"] == 3


def test_a_guest_upgrade_drops_the_guests_later_place_and_hands_over_the_others(tenant, app):
    """The other branches of the move: where the consumer queued first, the guest's later place
    goes (and its count); where only the guest queued, the place becomes the consumer's."""
    db = app.extensions["usher"].db
    otp = Otp(tenant)
    both, guest_only = tenant.queue(), tenant.queue()
    otp.request(email="first@example.com")
    spent = otp.last_code("first@example.com")
    held = otp.verify(email="first@example.com", code=spent).json
    upgrading, other = tenant.guest(), tenant.guest()
    for queue, who in ((both, held), (both, other), (both, upgrading), (guest_only, other), (guest_only, upgrading)):
        entered = tenant.client.post(f"/api/v1/queues/{queue['id']}/enter",
                                     headers=consumer(tenant.pk, who["accessToken"]))
        assert entered.status_code == 200
    otp.settings(otpCooldown=1)
    otp.cooldown_passes("first@example.com")
    assert otp.request(email="first@example.com").status_code == 202
    code = next(re.search(r"\b(\d{6,10})\b", m["body"]).group(1) for m in otp.outbox()
                if m["to"] == "first@example.com" and spent not in m["body"])
    merged = otp.verify(headers=bearer(upgrading["accessToken"]), email="first@example.com", code=code).json
    assert merged["session"]["consumerId"] == held["session"]["consumerId"]
    for queue, expected in ((both, {"held": 1, "other": 2}), (guest_only, {"other": 1, "held": 2})):
        states = {held["session"]["consumerId"]: tenant.status(queue["id"], merged["accessToken"]).json,
                  other["session"]["consumerId"]: tenant.status(queue["id"], other["accessToken"]).json}
        assert [s["position"] for s in states.values()] == [expected["held"], expected["other"]]
        assert_exact(db, queue["id"], states)
        assert tenant.client.get(f"/api/v1/queues/{queue['id']}",
                                 headers=publishable(tenant.pk)).json["consumerCount"] == 2


def _queue_counts_revision(url: str) -> str:
    """This change's migration, by its slug (the lead renumbers revisions on merge)."""
    scripts = ScriptDirectory.from_config(alembic_config(url))
    return next(r.revision for r in scripts.walk_revisions() if r.revision.endswith("_queue_counts"))


def test_the_migration_counts_the_queues_already_there(isolated_database):
    url = isolated_database()
    app = create_app({"TESTING": True, "DATABASE_URL": url, "APP_SECRET": APP_SECRET,
                      "GUEST_RATE_LIMIT": "100000 per minute"})
    db = app.extensions["usher"].db
    try:
        tenant = TenantActions(app.test_client(), Actions(app, app.test_client()).create_org()["keys"]["test"])
        queue = tenant.queue()
        guests = [tenant.guest() for _ in range(6)]
        for g in guests:
            tenant.client.post(f"/api/v1/queues/{queue['id']}/enter", headers=consumer(tenant.pk, g["accessToken"]))
        tenant.client.post(f"/api/v1/queues/{queue['id']}/leave", headers=consumer(tenant.pk, guests[1]["accessToken"]))
        db.dispose()
        revision = _queue_counts_revision(url)
        command.downgrade(alembic_config(url), f"{revision}-1")  # the schema before the counters
        engine = create_engine(url)
        with engine.connect() as connection:
            assert "queue_counts" not in _tables(connection)
        engine.dispose()
        command.upgrade(alembic_config(url), "head")
        assert stored_counts(db, queue["id"]) == recounted(db, queue["id"]) != {}
        states = {g["session"]["consumerId"]: tenant.status(queue["id"], g["accessToken"]).json for g in guests}
        assert [s["position"] for s in states.values()] == [1, None, 2, 3, 4, 5]
        assert_exact(db, queue["id"], states)
    finally:
        db.dispose()


def _tables(connection) -> set[str]:
    from sqlalchemy import inspect

    return set(inspect(connection).get_table_names())


def _bulk_queue(db, org_id: str, queue_id: str, total: int) -> None:
    """`total` guests queued in one statement per table (the bench's way), then counted as the
    migration counts them."""
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    values = {"prefix": f"guest_bulk{queue_id[-8:]}_", "org": org_id, "queue": queue_id, "now": now,
              "last": total - 1}
    engine = create_engine(db.url)  # not the app's: no statement timeout for a bulk load
    with engine.begin() as connection:
        # 0 … last, the same recursive CTE on both databases.
        connection.execute(text(
            "WITH RECURSIVE numbers(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM numbers WHERE n < :last) "
            "INSERT INTO consumers (id, organization_id, mode, created_at) "
            "SELECT :prefix || n, :org, 'test', :now FROM numbers"), values)
        connection.execute(text(
            "WITH RECURSIVE numbers(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM numbers WHERE n < :last) "
            "INSERT INTO queue_entries (queue_id, consumer_id, sequence, status, entered_at) "
            "SELECT :queue, :prefix || n, n, 'QUEUED', :now FROM numbers"), values)
        connection.execute(text("UPDATE queues SET next_sequence = :last + 1 WHERE id = :queue"), values)
        queue_store.GenericQueueStore().recount(connection, queue_id)
        if db.engine.dialect.name == "postgresql":
            connection.execute(text("ANALYZE queue_entries"))
            connection.execute(text("ANALYZE queue_counts"))
    engine.dispose()


def _drop_bulk(db, queue_id: str) -> None:
    engine = create_engine(db.url)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM queues WHERE id = :queue"), {"queue": queue_id})
        connection.execute(text("DELETE FROM consumers WHERE id LIKE :bulk"), {"bulk": f"guest_bulk{queue_id[-8:]}_%"})
    engine.dispose()


def test_status_costs_the_same_at_position_10_and_100000(tenant, app, org):
    """Ten thousand times more consumers ahead, the same work: on PostgreSQL no plan node of the
    status statement reads more than 64 rows (EXPLAIN ANALYZE); on both, the status request's
    median time at place 100,001 is within 1.5x of place 11's."""
    db = app.extensions["usher"].db
    queue = tenant.queue()
    _bulk_queue(db, org["organizationId"], queue["id"], 100_000)
    try:
        front, back = tenant.guest(), None
        path = f"/api/v1/queues/{queue['id']}"
        # A place near the front: a bulk consumer's entry leaves, this guest takes a new sequence at
        # the back, then the entries ahead but 10 leave through the service (counted).
        back = tenant.guest()
        assert tenant.client.post(f"{path}/enter", headers=consumer(tenant.pk, back["accessToken"])).json[
            "position"] == 100_001
        with db.write() as connection:
            connection.execute(text("UPDATE queue_entries SET consumer_id = :me WHERE queue_id = :queue "
                                    "AND sequence = 10"),
                               {"me": front["session"]["consumerId"], "queue": queue["id"]})
        assert tenant.status(queue["id"], front["accessToken"]).json["position"] == 11
        far = tenant.status(queue["id"], back["accessToken"]).json
        assert far["position"] == 100_001 and far["pollAfter"] == 60
        if db.engine.dialect.name == "postgresql":
            rows = _plan_rows(db, queue["id"], back["session"]["consumerId"])
            print(f"rows read by each plan node of the status statement at place 100,001: {rows}")
            assert max(rows) <= 64, rows
        # Interleaved pairs, compared pair by pair: a busy machine slows both of a pair alike.
        ratios, near_ms, far_ms = [], [], []
        for _ in range(40):
            took = []
            for who in (front, back):
                started = time.perf_counter()
                assert tenant.status(queue["id"], who["accessToken"]).status_code == 200
                took.append((time.perf_counter() - started) * 1000)
            near_ms.append(took[0])
            far_ms.append(took[1])
            ratios.append(took[1] / took[0])
        figures = {"near_ms": statistics.median(near_ms), "far_ms": statistics.median(far_ms),
                   "ratio": statistics.median(ratios)}
        print(f"status at position 11 vs 100,001 ({db.engine.dialect.name}): {figures}")
        assert figures["ratio"] <= 1.5, figures
    finally:
        _drop_bulk(db, queue["id"])


def _plan_rows(db, queue_id: str, consumer_id: str) -> list[int]:
    """Rows each node of the status statement's plan read (rows x loops), from EXPLAIN ANALYZE."""
    import json

    statement = queue_store.STATE_QUERY.compile(db.engine, compile_kwargs={"literal_binds": False})
    params = {k: v.value for k, v in statement.binds.items()}
    params.update({"queue_id": queue_id, "consumer_id": consumer_id})
    with db.engine.connect() as connection:
        plan = connection.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}",
                                          statement.construct_params(params)).scalar_one()
    found: list[int] = []

    def walk(node: dict) -> None:
        found.append(int(node["Actual Rows"] * node["Actual Loops"]))
        for child in node.get("Plans", ()):
            walk(child)

    walk((plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"])
    return found


def test_counts_of_an_empty_and_an_unlimited_queue(tenant, app):
    queue = tenant.queue(capacity=2)
    guests = [tenant.guest() for _ in range(3)]
    path = f"/api/v1/queues/{queue['id']}"
    answers = [tenant.client.post(f"{path}/enter", headers=consumer(tenant.pk, g["accessToken"])) for g in guests]
    assert [a.status_code for a in answers] == [200, 200, 409]
    assert answers[2].json["error"] == "conflict" and "full" in answers[2].json["message"]
    assert tenant.client.post(f"{path}/leave", headers=consumer(tenant.pk, guests[0]["accessToken"])).json[
        "pollAfter"] is None
    third = tenant.client.post(f"{path}/enter", headers=consumer(tenant.pk, guests[2]["accessToken"])).json
    assert third["position"] == 2 and third["pollAfter"] == 2
    with app.extensions["usher"].db.sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(QueueEntry).where(
            QueueEntry.queue_id == queue["id"], QueueEntry.status == "QUEUED")) == 2


@pytest.mark.parametrize(("position", "seconds"), [(1, 2), (50, 2), (51, 3), (100, 3), (101, 4), (2900, 59),
                                                    (2901, 60), (100_000, 60)])
def test_poll_after_grows_with_the_distance_between_2_and_60_seconds(position, seconds):
    assert queues.poll_after(position) == seconds
