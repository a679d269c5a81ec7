"""Deliveries through the real job engine: gunicorn and `flask --app wsgi worker` processes on a
PostgreSQL and a Redis of the test's own (Dramatiq's Redis broker at JOB_BROKER_URL).

The worker is killed (SIGKILL) in the middle of a delivery and started again: the message comes
back (Dramatiq acknowledges only after the job ran), and the receiver, which de-duplicates by
`webhook-id` as Standard Webhooks asks, processes the event exactly once."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from dramatiq.brokers.redis import RedisBroker
from dramatiq.errors import QueueJoinTimeout

from app.cli import upgrade_database
from app.jobs import QUEUE
from tests.artifacts import record
from tests.conftest import APP_SECRET
from tests.helpers import publishable, secret
from tests.live import ROOT, LiveServer, PostgresServer, RedisServer, http
from tests.receiver import Receiver

pytestmark = [
    pytest.mark.gunicorn,
    pytest.mark.services,
    pytest.mark.own_services,
    pytest.mark.skipif(shutil.which("redis-server") is None or shutil.which("pg_ctl") is None,
                       reason="redis-server and pg_ctl are needed (.ci/run installs them)"),
]


class Worker:
    """`flask --app wsgi worker`, as an operator starts it."""

    def __init__(self, env: dict, log_path):
        self.env, self.log_path = env, log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--threads", "2"],
                                        cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int | None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode if self.process else None


@pytest.fixture
def stack(tmp_path):
    postgres = PostgresServer()
    postgres.init()
    postgres.start()
    upgrade_database(postgres.url)
    redis = RedisServer(tmp_path)
    redis.start()
    env = {**os.environ, "DATABASE_URL": postgres.url, "APP_SECRET": APP_SECRET, "RATELIMIT_STORAGE_URI": redis.url,
           "JOB_BROKER_URL": redis.url, "JOB_HEARTBEAT_TIMEOUT_SECONDS": "3", "WEBHOOK_TIMEOUT_SECONDS": "3",
           "WEBHOOK_LISTENERS_CACHE_SECONDS": "0", "GUEST_RATE_LIMIT": "100000 per minute", "WEB_CONCURRENCY": "2",
           "WEBHOOK_PRIVATE_TARGETS": "allow"}
    server = LiveServer(env, tmp_path / "gunicorn.log")
    server.start()
    created = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "org", "create", "--name", "Hooks",
                              "--json"], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    import json

    keys = json.loads(created.stdout)["keys"]["test"]
    workers: list[Worker] = []

    def new_worker() -> Worker:
        worker = Worker(env, tmp_path / "worker.log")
        worker.start()
        workers.append(worker)
        return worker

    yield server, keys, new_worker, tmp_path
    for worker in workers:
        worker.stop()
    server.stop()
    redis.stop()
    postgres.remove()


def _deliveries(server, keys, endpoint_id) -> list[dict]:
    reply = http("GET", f"{server.url}/api/v1/webhook-endpoints/{endpoint_id}/deliveries", secret(keys["secretKey"]))
    assert reply.status == 200, reply.body
    return reply.body["data"]


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _observer(redis_url: str) -> RedisBroker:
    """The workers' broker seen from the test (namespace `usher`, the app's default): `join`
    returns once no message is queued, delayed or held unacknowledged by any worker, dead or
    alive. It only looks (no maintenance: it never requeues a dead worker's messages itself)."""
    return RedisBroker(url=redis_url, namespace="usher", maintenance_chance=0)


def _endpoint(server, keys, url) -> dict:
    reply = http("POST", f"{server.url}/api/v1/webhook-endpoints", secret(keys["secretKey"]),
                 {"url": url, "events": ["session.created"]})
    assert reply.status == 201, reply.body
    return reply.body


def test_worker_killed_mid_delivery_delivers_exactly_once(stack):
    server, keys, new_worker, tmp_path = stack
    with Receiver(hang=120, log_path=tmp_path / "receiver.log") as receiver:
        endpoint = _endpoint(server, keys, receiver.url)
        receiver.secrets.append(endpoint["secret"])
        first = new_worker()
        guest = http("POST", f"{server.url}/api/v1/auth/guest", publishable(keys["publishableKey"]))
        assert guest.status == 201
        assert receiver.arrived.wait(30), (tmp_path / "worker.log").read_text()[-3000:]
        first.kill()  # in the middle of the delivery: the request arrived, no answer was read
        killed_at = time.monotonic()
        [pending] = _deliveries(server, keys, endpoint["id"])
        assert pending["status"] == "pending" and pending["attempts"] == 0
        broker = _observer(server.env["JOB_BROKER_URL"])
        with pytest.raises(QueueJoinTimeout):  # the killed worker's message is still in the broker
            broker.join(QUEUE, timeout=300)
        new_worker()
        delivered = _wait(lambda: [d for d in _deliveries(server, keys, endpoint["id"]) if d["status"] != "pending"],
                          60, "the delivery to settle after the restart")
        settled_at = time.monotonic()
        # A second, duplicate send would need a message still in the broker: wait until every
        # message is acknowledged (the worker acknowledges after the job ran), then count.
        broker.join(QUEUE, timeout=60_000)
        broker.close()
        received = list(receiver.received)
    record("events.json", "worker killed mid-delivery", {
        "seconds_from_kill_to_delivered": round(settled_at - killed_at, 2), "requests_received": len(received),
        "processed_by_receiver": len(receiver.processed), "JOB_HEARTBEAT_TIMEOUT_SECONDS": 3})
    assert delivered == [{"id": received[0]["headers"]["webhook-id"], "eventType": "session.created",
                          "status": "succeeded", "attempts": 1, "lastResponseStatus": 200, "lastError": None,
                          "nextAttemptAt": None}]
    assert len(received) == 2  # the killed attempt and the one after the restart
    assert all(r["event"] is not None for r in received)  # both verified by the standardwebhooks library
    assert {r["headers"]["webhook-id"] for r in received} == {delivered[0]["id"]}
    assert list(receiver.processed) == [delivered[0]["id"]]  # processed exactly once
    assert receiver.processed[delivered[0]["id"]]["data"]["sessionId"] == guest.body["session"]["sessionId"]


def test_a_failing_receiver_is_retried_by_the_engine_on_the_contract_schedule(stack):
    server, keys, new_worker, _ = stack
    new_worker()
    with Receiver(statuses=[500]) as receiver:
        endpoint = _endpoint(server, keys, receiver.url)
        receiver.secrets.append(endpoint["secret"])
        assert http("POST", f"{server.url}/api/v1/auth/guest", publishable(keys["publishableKey"])).status == 201
        received = receiver.wait_for(2, timeout=40)
        [delivery] = _wait(lambda: [d for d in _deliveries(server, keys, endpoint["id"]) if d["status"] != "pending"],
                           20, "the retried delivery to succeed")
    gap = received[1]["at"] - received[0]["at"]
    record("events.json", "500 then 200 on the real engine", {"seconds_between_attempts": round(gap, 2),
                                                              "attempts": delivery["attempts"]})
    assert 5 <= gap < 15, gap  # the first retry comes after the contract's 5 s
    assert delivery["attempts"] == 2 and delivery["status"] == "succeeded" and delivery["lastResponseStatus"] == 200
    assert received[0]["headers"]["webhook-id"] == received[1]["headers"]["webhook-id"]


def test_the_worker_refuses_to_start_without_a_broker(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JOB_BROKER_URL"}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", APP_SECRET=APP_SECRET)
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "worker"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0 and "JOB_BROKER_URL is not set" in result.stderr
