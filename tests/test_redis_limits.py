"""Limits shared by gunicorn workers through Redis, and failing closed when Redis is gone.

Each test starts its own redis-server on a spare port and stops it itself."""

from __future__ import annotations

import shutil
import time

import pytest

from tests.conftest import APP_SECRET
from tests.helpers import publishable
from tests.live import LiveServer, RedisServer, http
from tests.test_sessions import race

pytestmark = [pytest.mark.gunicorn, pytest.mark.services,
              pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")]


@pytest.fixture
def redis_and_gunicorn(database_url, tmp_path, actions):
    redis = RedisServer(tmp_path)
    redis.start()
    server = LiveServer({"DATABASE_URL": database_url, "APP_SECRET": APP_SECRET, "WEB_CONCURRENCY": "4",
                         "RATELIMIT_STORAGE_URI": redis.url}, tmp_path / "gunicorn.log")
    server.start()
    keys = actions.create_org()["keys"]["test"]
    yield redis, server, keys["publishableKey"]
    server.stop()
    redis.stop()


def test_an_identifiers_limit_holds_across_four_workers(redis_and_gunicorn):
    _, server, pk = redis_and_gunicorn
    url = server.url + "/api/v1/auth/otp/request"
    replies = race(12, lambda: http("POST", url, publishable(pk), {"email": "shared@example.com"}))
    assert sorted(r.status for r in replies) == [202] + [429] * 11
    # The requests really were spread over several workers.
    pids = {line.split("pid: ")[1] for line in server.log().splitlines() if "Booting worker with pid" in line}
    assert len(pids) == 4
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
