"""Usher behind a real PgBouncer in transaction mode, and the connection budget's failures as 503s
(issue 29). Each test starts its own PostgreSQL and PgBouncer on spare ports."""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from app import create_app
from app.cli import upgrade_database
from app.db import Database, _prepare_threshold
from tests.conftest import APP_SECRET
from tests.helpers import Actions, TenantActions, consumer, publishable
from tests.live import LiveServer, PgBouncerServer, PostgresServer, http
from tests.test_faults import record

pytestmark = [
    pytest.mark.services,
    pytest.mark.own_services,
    pytest.mark.skipif(shutil.which("pgbouncer") is None or shutil.which("pg_ctl") is None,
                       reason="pgbouncer and pg_ctl are needed (Debian's pgbouncer and postgresql packages)"),
]


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer()
    server.init()
    server.start()
    upgrade_database(server.url)
    yield server
    server.remove()


@pytest.fixture
def bouncer(postgres):
    bouncer = PgBouncerServer("127.0.0.1", postgres.port, "postgres", "postgres")
    bouncer.start()
    yield bouncer
    bouncer.stop()


def _keys(url: str) -> dict:
    app = create_app({"DATABASE_URL": url, "APP_SECRET": APP_SECRET})
    keys = Actions(app, app.test_client()).create_org("Bounced")["keys"]["test"]
    app.extensions["usher"].db.dispose()
    return keys


def _mixed_load(url: str, pk: str, queue_id: str, shoppers: int, rounds: int) -> Counter:
    """Shoppers at once, each round: a guest session, enter, three status polls, a refresh, leave,
    enter again, a status poll (every statement of these paths runs more than psycopg's default
    five times on each connection). The answers' statuses by step."""
    seen: Counter = Counter()
    lock = threading.Lock()

    def shopper():
        for _ in range(rounds):
            guest = http("POST", url + "/api/v1/auth/guest", publishable(pk))
            steps = [("guest", guest.status)]
            if guest.status == 201:
                token, path = guest.body["accessToken"], f"{url}/api/v1/queues/{queue_id}"
                headers = consumer(pk, token)
                steps.append(("enter", http("POST", f"{path}/enter", headers).status))
                steps += [("status", http("GET", f"{path}/status", headers).status) for _ in range(3)]
                steps.append(("refresh", http("POST", url + "/api/v1/auth/refresh", publishable(pk),
                                              {"refreshToken": guest.body["refreshToken"]}).status))
                steps.append(("leave", http("POST", f"{path}/leave", headers).status))
                steps.append(("enter", http("POST", f"{path}/enter", headers).status))
                steps.append(("status", http("GET", f"{path}/status", headers).status))
            with lock:
                seen.update(steps)

    threads = [threading.Thread(target=shopper) for _ in range(shoppers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return seen


def _server(bouncer_url: str, tmp_path, name: str) -> LiveServer:
    return LiveServer({"DATABASE_URL": bouncer_url, "APP_SECRET": APP_SECRET, "WEB_CONCURRENCY": "2",
                       "GUEST_RATE_LIMIT": "100000 per minute", "RATELIMIT_STORAGE_URI": "memory://"},
                      tmp_path / f"{name}.log")


@pytest.mark.gunicorn
def test_a_mixed_load_through_pgbouncer_in_transaction_mode_answers_no_5xx(bouncer, postgres, tmp_path):
    keys = _keys(postgres.url)
    pk = keys["publishableKey"]
    secret = {"Authorization": f"Bearer {keys['secretKey']}"}
    figures = {}
    # The default (no server-side prepared statements), and `?prepare_threshold=` (empty: the same).
    for name, url in (("default", bouncer.url), ("empty prepare_threshold", bouncer.url + "?prepare_threshold=")):
        server = _server(url, tmp_path, name.replace(" ", "-"))
        server.start()
        try:
            experience = http("POST", server.url + "/api/v1/experiences", secret, {"name": "Drop"}).body
            queue = http("POST", server.url + "/api/v1/queues", secret,
                         {"experienceId": experience["id"], "name": "Main"}).body
            seen = _mixed_load(server.url, pk, queue["id"], shoppers=8, rounds=6 if name == "default" else 2)
        finally:
            server.stop()
        figures[name] = {f"{step} {status}": n for (step, status), n in sorted(seen.items())}
        assert all(status < 500 for _step, status in seen), (name, seen, server.log()[-3000:])
        assert sum(seen.values()) >= 8 * (2 if name != "default" else 6) * 9
    # Psycopg's own default (prepare after five runs) is what fails behind a transaction pooler.
    server = _server(bouncer.url + "?prepare_threshold=1", tmp_path, "prepared")
    server.start()
    try:
        experience = http("POST", server.url + "/api/v1/experiences", secret, {"name": "Drop"}).body
        queue = http("POST", server.url + "/api/v1/queues", secret,
                     {"experienceId": experience["id"], "name": "M"}).body
        prepared = _mixed_load(server.url, pk, queue["id"], shoppers=8, rounds=3)
    finally:
        server.stop()
    figures["prepare_threshold=1"] = {f"{step} {status}": n for (step, status), n in sorted(prepared.items())}
    record("pgbouncer transaction mode", figures)
    assert any(status >= 500 for _step, status in prepared), prepared


def test_a_pool_that_cannot_connect_answers_503(bouncer, postgres):
    keys = _keys(postgres.url)
    # Every connection of the process's own pool busy: 503 after DATABASE_POOL_TIMEOUT_SECONDS.
    app = create_app({"DATABASE_URL": bouncer.url, "APP_SECRET": APP_SECRET, "DATABASE_POOL_SIZE": 2,
                      "DATABASE_MAX_OVERFLOW": 0, "DATABASE_POOL_TIMEOUT_SECONDS": 0.3})
    tenant = TenantActions(app.test_client(), keys)
    queue = tenant.queue()
    guest = tenant.guest()
    db = app.extensions["usher"].db
    with db.engine.connect(), db.engine.connect():
        busy = tenant.status(queue["id"], guest["accessToken"])
    assert busy.status_code == 503 and busy.json == {"error": "service_unavailable",
                                                     "message": busy.json["message"]}
    assert busy.headers["Retry-After"] == "1"
    assert tenant.status(queue["id"], guest["accessToken"]).status_code == 404  # not entered; served again
    # PgBouncer cannot reach PostgreSQL: its clients' queries fail (query_wait_timeout), 503 too.
    postgres.stop("fast")
    try:
        db.dispose()
        down = tenant.status(queue["id"], guest["accessToken"])
        assert down.status_code == 503 and down.json["error"] == "service_unavailable", down.json
        entering = tenant.client.post(f"/api/v1/queues/{queue['id']}/enter",
                                      headers=consumer(tenant.pk, guest["accessToken"]))
        assert entering.status_code == 503 and entering.json["error"] == "service_unavailable"
    finally:
        postgres.start()
        db.dispose()


def test_statement_and_lock_timeouts_come_from_the_environment_and_answer_503(postgres):
    keys = _keys(postgres.url)
    app = create_app({"DATABASE_URL": postgres.url, "APP_SECRET": APP_SECRET, "DATABASE_STATEMENT_TIMEOUT_MS": 2500,
                      "DATABASE_LOCK_TIMEOUT_MS": 200})
    db = app.extensions["usher"].db
    with db.engine.connect() as connection:
        assert connection.execute(text("SHOW statement_timeout")).scalar_one() == "2500ms"
        assert connection.execute(text("SHOW lock_timeout")).scalar_one() == "200ms"
        assert connection.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar_one() == 0
    tenant = TenantActions(app.test_client(), keys)
    queue = tenant.queue()
    guest = tenant.guest()
    # An enter waits for the queue's row lock: held elsewhere past the lock timeout, 503, nothing written.
    other = Database(postgres.url)
    with other.engine.begin() as holder:
        holder.execute(text("SELECT id FROM queues WHERE id = :id FOR UPDATE"), {"id": queue["id"]})
        started = datetime.now(UTC)
        stuck = tenant.client.post(f"/api/v1/queues/{queue['id']}/enter",
                                   headers=consumer(tenant.pk, guest["accessToken"]))
        waited = (datetime.now(UTC) - started).total_seconds()
    other.dispose()
    assert stuck.status_code == 503 and stuck.json["error"] == "service_unavailable", stuck.json
    assert waited < 2, waited
    assert tenant.status(queue["id"], guest["accessToken"]).status_code == 404  # never entered
    entered = tenant.client.post(f"/api/v1/queues/{queue['id']}/enter", headers=consumer(tenant.pk,
                                                                                         guest["accessToken"]))
    assert entered.status_code == 200 and entered.json["position"] == 1
    db.dispose()


@pytest.mark.parametrize(("raw", "threshold"), [(None, None), ("", None), ("none", None), ("abc", None), ("0", 0),
                                                ("5", 5)])
def test_prepare_threshold_in_the_database_url(raw, threshold):
    assert _prepare_threshold(raw) == threshold
