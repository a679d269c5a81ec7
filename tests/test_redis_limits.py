"""Limits shared by gunicorn workers through Redis, and failing closed when Redis is gone.

Each test starts its own redis-server on a spare port and stops it itself."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPResponse
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import APP_SECRET
from tests.helpers import TenantActions, publishable, secret
from tests.live import LiveServer, RedisServer, http

pytestmark = [pytest.mark.gunicorn, pytest.mark.services,
              pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")]


@pytest.fixture
def redis_and_gunicorn(database_url, tmp_path, actions):
    redis = RedisServer(tmp_path)
    redis.start()
    # gunicorn's access log, each line naming the worker (pid) that answered.
    server = LiveServer({"DATABASE_URL": database_url, "APP_SECRET": APP_SECRET, "WEB_CONCURRENCY": "4",
                         "RATELIMIT_STORAGE_URI": redis.url, "GUNICORN_ACCESSLOG": str(tmp_path / "access.log"),
                         "GUNICORN_CMD_ARGS": "--access-logformat '%(p)s %(s)s %(U)s'"}, tmp_path / "gunicorn.log")
    server.start()
    keys = actions.create_org()["keys"]["test"]
    yield redis, server, keys["publishableKey"]
    server.stop()
    redis.stop()


def _held_requests(count: int, method: str, url: str, headers: dict, body: dict | None = None) -> list[int]:
    """`count` requests in flight at once: each connection sends its headers but the blank line, so
    a sync worker that accepted it waits on it and the next connection goes to another worker;
    then all of them are completed at the same instant. Returns the statuses."""
    parts = urlsplit(url)
    data = json.dumps(body).encode() if body is not None else b""
    head = "".join(f"{name}: {value}\r\n" for name, value in {
        **headers, "Host": parts.netloc, "Content-Type": "application/json", "Content-Length": len(data),
        "Connection": "close"}.items())
    barrier = threading.Barrier(count)

    def send(_) -> int:
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
            sock.sendall(f"{method} {parts.path} HTTP/1.1\r\n{head}".encode())
            barrier.wait()
            sock.sendall(b"\r\n" + data)
            response = HTTPResponse(sock)
            response.begin()
            response.read()
            return response.status

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(send, range(count)))


def _answered(access_log: Path, path: str, count: int) -> list[list[str]]:
    """[pid, status, path] of the access log's lines for `path`, once there are `count` of them (a
    worker writes its line just after answering)."""
    lines: list[list[str]] = []
    deadline = time.monotonic() + 5
    while len(lines) < count and time.monotonic() < deadline:
        text = access_log.read_text() if access_log.exists() else ""
        lines = [line.split() for line in text.splitlines() if line.endswith(" " + path)]
        time.sleep(0.05)
    return lines


def _four_workers_up(server, access_log: Path) -> None:
    """gunicorn answers once its first worker is up; the others boot after it. Wait until four
    requests held at once are answered by four workers."""
    deadline, rounds = time.monotonic() + 60, 0
    while True:
        assert _held_requests(4, "GET", server.url + "/healthz", {}) == [200] * 4
        rounds += 1
        if len({pid for pid, _, _ in _answered(access_log, "/healthz", 4 * rounds)[-4:]}) == 4:
            return
        assert time.monotonic() < deadline, "four workers never answered at once"


def test_an_identifiers_limit_holds_across_four_workers(redis_and_gunicorn, tmp_path):
    _, server, pk = redis_and_gunicorn
    access_log = tmp_path / "access.log"
    _four_workers_up(server, access_log)

    url = server.url + "/api/v1/auth/otp/request"
    statuses = _held_requests(12, "POST", url, publishable(pk), {"email": "shared@example.com"})
    assert sorted(statuses) == [202] + [429] * 11
    # The twelve were answered by all four workers, and still only one code went out.
    answered = _answered(access_log, "/api/v1/auth/otp/request", 12)
    assert sorted(status for _, status, _ in answered) == ["202"] + ["429"] * 11
    assert len({pid for pid, _, _ in answered}) == 4, answered
    # And sequentially, on whichever worker answers, the cooldown holds too.
    for _ in range(8):
        assert http("POST", url, publishable(pk), {"email": "shared@example.com"}).status == 429


def test_with_redis_stopped_otp_fails_closed_within_a_second_and_guest_keeps_working(redis_and_gunicorn):
    redis, server, pk = redis_and_gunicorn
    assert http("POST", server.url + "/api/v1/auth/otp/request", publishable(pk), {"email": "a@example.com"}).status \
        == 202
    redis.stop()
    for body in ({"email": "b@example.com"}, {"phone": "+12025551234"}):
        started = time.monotonic()
        reply = http("POST", server.url + "/api/v1/auth/otp/request", publishable(pk), body)
        elapsed = time.monotonic() - started
        assert reply.status == 503, reply.body
        assert reply.body["error"] == "service_unavailable" and reply.headers["Retry-After"]
        assert elapsed < 1.0, elapsed
    started = time.monotonic()
    verify = http("POST", server.url + "/api/v1/auth/otp/verify", publishable(pk),
                  {"email": "a@example.com", "code": "123456"})
    assert verify.status == 503 and time.monotonic() - started < 1.0
    guest = http("POST", server.url + "/api/v1/auth/guest", publishable(pk))
    assert guest.status == 201


def test_one_redis_round_trip_per_limit_check(app_config, tmp_path, monkeypatch):
    """The sliding window counter costs one Redis round trip (one Lua script) per check: a guest
    session (one limit) is one round trip, an OTP request (three limits) three."""
    import redis.connection

    from app import create_app
    from app.services.orgs import create_organization

    sent = []
    real_send = redis.connection.Connection.send_packed_command

    def counting_send(connection, command, *args, **kwargs):
        sent.append(command)
        return real_send(connection, command, *args, **kwargs)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting_send)
    server = RedisServer(tmp_path)
    server.start()
    app = create_app({**app_config, "RATELIMIT_STORAGE_URI": server.url})
    try:
        with app.extensions["usher"].db.transaction() as session:
            pk = create_organization(session, app.extensions["usher"].settings.app_secret,
                                     "Trips")["keys"]["test"]["publishableKey"]
        client = app.test_client()
        for n in range(2):  # warm-up: connections are made and scripts loaded on first use
            client.post("/api/v1/auth/guest", headers=publishable(pk))
            client.post("/api/v1/auth/otp/request", headers=publishable(pk), json={"email": f"w{n}@example.com"})
        sent.clear()
        assert client.post("/api/v1/auth/guest", headers=publishable(pk)).status_code == 201
        assert len(sent) == 1, sent
        sent.clear()
        assert client.post("/api/v1/auth/otp/request", headers=publishable(pk),
                           json={"email": "trips@example.com"}).status_code == 202
        assert len(sent) == 3, sent
    finally:
        app.extensions["usher"].db.dispose()
        server.stop()


def test_an_altcha_solution_works_once_across_four_workers(redis_and_gunicorn, tmp_path, app, actions):
    """Bot defense's replay check lives in the shared limit storage: one solution, sent at once
    to every worker, makes one guest."""
    from tests.test_bot_defense import solve

    _, server, _ = redis_and_gunicorn
    org = actions.create_org()
    tenant = TenantActions(app.test_client(), org["keys"]["test"], org["organizationId"])
    assert tenant.client.patch("/api/v1/settings", json={"botDefense": "altcha", "altchaComplexity": 1000},
                               headers=secret(tenant.sk)).status_code == 200
    time.sleep(1.1)  # gunicorn's workers may hold the key's row for PUBLISHABLE_KEY_CACHE_SECONDS (1 s)
    access_log = tmp_path / "access.log"
    _four_workers_up(server, access_log)
    proof = solve(tenant)  # issued by this process: the key is APP_SECRET's, the same on every worker
    statuses = _held_requests(12, "POST", server.url + "/api/v1/auth/guest",
                              {**publishable(tenant.pk), "X-Usher-Challenge": proof})
    assert sorted(statuses) == [201] + [403] * 11
    answered = _answered(access_log, "/api/v1/auth/guest", 12)
    assert len({pid for pid, _, _ in answered}) > 1, answered  # refused by workers other than the winner's
    assert http("POST", server.url + "/api/v1/auth/guest",
                {**publishable(tenant.pk), "X-Usher-Challenge": proof}).status == 403
