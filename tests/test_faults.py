"""Faults against the real stack: PostgreSQL restarted, Redis stopped, a worker killed, a reload.

Each test starts its own PostgreSQL / Redis / gunicorn on spare ports and never touches the
machine's shared services. Figures are written to test-artifacts/faults.json."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from app.cli import upgrade_database
from app.db import Database
from app.services.orgs import create_organization
from tests.conftest import APP_SECRET
from tests.helpers import publishable, secret
from tests.live import ROOT, LiveServer, PostgresServer, RedisServer, http
from tests.load import Load, start_clients

pytestmark = [
    pytest.mark.gunicorn,
    pytest.mark.services,
    pytest.mark.own_services,
    pytest.mark.skipif(shutil.which("redis-server") is None or shutil.which("pg_ctl") is None,
                       reason="redis-server and pg_ctl are needed (.ci/run installs them)"),
]
ARTIFACTS = ROOT / "test-artifacts"


def record(name: str, figures: dict) -> None:
    """Add this run's figures to test-artifacts/faults.json, and check they are there."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "faults.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = figures
    path.write_text(json.dumps(data, indent=2, default=str))
    assert json.loads(path.read_text())[name] == json.loads(json.dumps(figures, default=str))


def _org(url: str) -> dict:
    db = Database(url)
    with db.transaction() as session:
        keys = create_organization(session, APP_SECRET, "Faults")["keys"]["test"]
    db.dispose()
    return keys


@pytest.fixture
def pg_stack(tmp_path):
    postgres = PostgresServer()
    postgres.init()
    postgres.start()
    upgrade_database(postgres.url)
    redis = RedisServer(tmp_path)
    redis.start()
    # gunicorn's access log names the worker (pid) that answered each request.
    server = LiveServer({"DATABASE_URL": postgres.url, "APP_SECRET": APP_SECRET, "WEB_CONCURRENCY": "4",
                         "RATELIMIT_STORAGE_URI": redis.url, "GUEST_RATE_LIMIT": "100000 per minute",
                         "GUNICORN_ACCESSLOG": str(tmp_path / "access.log"),
                         "GUNICORN_CMD_ARGS": "--access-logformat '%(p)s %(s)s %(U)s'"},
                        tmp_path / "gunicorn.log")
    server.start()
    yield postgres, redis, server, _org(postgres.url)
    server.stop()
    redis.stop()
    postgres.remove()


def _all_workers_serving(load: Load, server: LiveServer) -> bool:
    """Every client served, by all four workers (gunicorn answers once its first worker is up;
    the others boot after it)."""
    access_log = server.log_path.with_name("access.log")
    workers = {line.split()[0] for line in access_log.read_text().splitlines()} if access_log.exists() else set()
    return len(workers) >= 4 and load.each_client(float("-inf"), 3)


def _first_success_after(load: Load, moment: float) -> float | None:
    return next((o.at for o in load.outcomes(moment) if o.status == 200), None)


def test_postgres_restart_under_load(pg_stack):
    postgres, _, server, keys = pg_stack
    clients = start_clients(server.url, keys["publishableKey"], 8, extra=["guest"])
    with Load(clients) as load:
        load.wait_until(lambda: _all_workers_serving(load, server), 30, "all four workers serving")
        down_at = time.monotonic()
        postgres.stop("fast")
        load.wait_until(lambda: load.counts(down_at)[503] >= len(clients), 30, "503s while PostgreSQL is down")
        up_at = time.monotonic()
        postgres.start()
        ready_at = time.monotonic()
        # Back to normal: every client's last ten calls (five rounds of refresh and guest) succeeded.
        settled_at = load.wait_until(lambda: load.each_client(ready_at, 10), 30, "every client served again")
    while_down = load.counts(down_at, ready_at)
    recovered = _first_success_after(load, ready_at)
    last_failure = max((o.at for o in load.outcomes(ready_at) if o.status not in (200, 201)), default=ready_at)
    figures = {"before": dict(load.counts(end=down_at)), "while_down": dict(while_down),
               "after_restart": dict(load.counts(ready_at)), "postgres_down_seconds": round(ready_at - down_at, 2),
               "seconds_to_recover": round(recovered - ready_at, 2) if recovered else None,
               "seconds_to_last_failure": round(last_failure - ready_at, 2),
               "seconds_to_every_client_served": round(settled_at - ready_at, 2),
               "postgres_start_seconds": round(ready_at - up_at, 2)}
    record("postgres restart", figures)
    statuses = set(load.counts())
    assert statuses <= {200, 201, 503}, figures  # never a 500, never a dropped connection
    assert 503 in while_down, figures
    assert recovered is not None and recovered - ready_at <= 10, figures
    assert last_failure - ready_at <= 10, figures  # the stale pooled connections are gone within 10 s
    # Every session has exactly one live successor: its holder's last token refreshes it.
    for client in clients:
        reply = http("POST", server.url + "/api/v1/auth/refresh", publishable(keys["publishableKey"]),
                     {"refreshToken": client.refresh_token})
        assert reply.status == 200, reply.body
        replay = http("POST", server.url + "/api/v1/auth/refresh", publishable(keys["publishableKey"]),
                      {"refreshToken": reply.body["refreshToken"]})
        assert replay.status == 200


def test_redis_stopped_fails_otp_and_exchange_closed_and_keeps_sessions_going(pg_stack):
    _, redis, server, keys = pg_stack
    pk, sk, url = keys["publishableKey"], keys["secretKey"], server.url
    guest = http("POST", url + "/api/v1/auth/guest", publishable(pk)).body
    code = http("POST", url + "/api/v1/auth/external/authorize", secret(sk),
                {"provider": "p", "issuer": "https://shop.example", "subject": "s"}).body["exchangeCode"]
    redis.stop()
    timings = {}
    for name, path, body in (("otp_request", "/api/v1/auth/otp/request", {"email": "a@example.com"}),
                             ("otp_verify", "/api/v1/auth/otp/verify", {"email": "a@example.com", "code": "123456"}),
                             ("exchange", "/api/v1/auth/external/exchange", {"exchangeCode": code})):
        started = time.monotonic()
        reply = http("POST", url + path, publishable(pk), body)
        timings[name] = round(time.monotonic() - started, 3)
        assert reply.status == 503 and reply.body["error"] == "service_unavailable", (name, reply.body)
        assert timings[name] < 1.0, timings
    assert http("POST", url + "/api/v1/auth/guest", publishable(pk)).status == 201
    refreshed = http("POST", url + "/api/v1/auth/refresh", publishable(pk), {"refreshToken": guest["refreshToken"]})
    assert refreshed.status == 200
    ready = http("GET", url + "/readyz")  # the contract: a limit-storage outage degrades, it does not fail readiness
    assert ready.status == 200 and ready.body == {"status": "ok", "database": "ok", "signingKeys": "ok",
                                                  "limits": "degraded"}
    restarted = time.monotonic()
    redis.start()
    recovered = None
    while time.monotonic() - restarted < 10:
        if http("POST", url + "/api/v1/auth/otp/request", publishable(pk), {"email": "b@example.com"}).status == 202:
            recovered = time.monotonic() - restarted
            break
        time.sleep(0.1)
    record("redis stopped", {"seconds_to_503": timings, "seconds_to_recover": recovered and round(recovered, 2)})
    assert recovered is not None and recovered <= 5
    assert http("POST", url + "/api/v1/auth/external/exchange", publishable(pk), {"exchangeCode": code}).status == 200


def _worker_pids(master: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master)], capture_output=True, text=True, check=False)
    return [int(pid) for pid in out.stdout.split()]


def test_a_worker_killed_mid_refresh_costs_only_its_in_flight_requests(pg_stack):
    _, _, server, keys = pg_stack
    clients = start_clients(server.url, keys["publishableKey"], 8)
    with Load(clients, pause=0) as load:
        load.wait_until(lambda: _all_workers_serving(load, server), 30, "all four workers serving")
        victim = _worker_pids(server.process.pid)[0]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        # Watched for a second past the kill (the failures must all fall inside it), until the
        # master has replaced the worker and every client is served again.
        load.wait_until(lambda: len(_worker_pids(server.process.pid)) == 4 and victim not in _worker_pids(
            server.process.pid) and load.each_client(killed_at + 1, 3), 30, "the worker replaced, clients served")
    failures = [o for o in load.outcomes() if o.status != 200]
    figures = {"statuses": dict(load.counts()), "failed": len(failures),
               "failed_within_1s_of_kill": len([o for o in failures if 0 <= o.at - killed_at < 1])}
    record("worker SIGKILL", figures)
    assert len(failures) <= len(clients), figures  # at most the requests in flight on that worker
    assert all(0 <= o.at - killed_at < 1 for o in failures), figures
    assert all(o.status in ("RemoteDisconnected", "ConnectionResetError", "BadStatusLine", "IncompleteRead")
               for o in failures), figures
    # Every client retried with its last token (inside the grace window) and still holds its session.
    for client in clients:
        assert client.outcomes[-1].status == 200
        reply = http("POST", server.url + "/api/v1/auth/refresh", publishable(keys["publishableKey"]),
                     {"refreshToken": client.refresh_token})
        assert reply.status == 200
    assert len(_worker_pids(server.process.pid)) == 4  # the master replaced it


def _replaced(workers: set[int], before: set[int]) -> bool:
    return len(workers) == 4 and not workers & before


def test_graceful_reload_under_load_fails_nothing(pg_stack):
    _, _, server, keys = pg_stack
    # What is claimed is that no request fails; how long one waits while four new workers boot is
    # the machine's speed (over 10 s on a loaded 2-core box), so the clients wait up to 60 s.
    clients = start_clients(server.url, keys["publishableKey"], 6, extra=["guest"], timeout=60)
    before = set(_worker_pids(server.process.pid))
    with Load(clients) as load:
        load.wait_until(lambda: _all_workers_serving(load, server), 30, "all four workers serving")
        server.process.send_signal(signal.SIGHUP)
        replaced_at = load.wait_until(lambda: _replaced(set(_worker_pids(server.process.pid)), before), 30,
                                      "four new workers and no old one")
        load.wait_until(lambda: load.each_client(replaced_at, 6), 30, "every client served by the new workers")
    after = set(_worker_pids(server.process.pid))
    figures = {"statuses": dict(load.counts()), "requests": len(load.outcomes()),
               "workers_replaced": len(before - after)}
    record("graceful reload (HUP)", figures)
    assert set(load.counts()) <= {200, 201}, figures
    assert len(before - after) == 4 and len(after) == 4, figures
