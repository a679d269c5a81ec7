"""Background jobs on Dramatiq: webhook deliveries and their retries.

Dramatiq is the engine: its Redis broker (`JOB_BROKER_URL`) carries the messages, its workers
(`flask --app wsgi worker`) run them, its Retries middleware re-enqueues a failed delivery with
the delay the contract sets (`dramatiq.Retry(delay=…)`), and its delay queue holds it until then.
A message is acknowledged only after the job ran, so a worker killed mid-delivery loses nothing:
once its heartbeat is older than `JOB_HEARTBEAT_TIMEOUT_SECONDS` another worker takes the
message up again (the receiver sees the same `webhook-id` again, and de-duplicates on it).

With `JOB_BROKER_URL` unset (`make run`, the tests' first pass) the broker is Dramatiq's
in-memory StubBroker and a Dramatiq worker runs in threads of this process: the same jobs, the
same retries, nothing more to start.

The broker and actors are built per app in `create_app` (`Jobs`), never on module globals.
"""

from __future__ import annotations

import logging
import os
import threading

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from flask import Flask

from app.config import Settings
from app.jobs import webhooks

log = logging.getLogger("usher.jobs")

QUEUE = "usher-webhooks"


class Jobs:
    def __init__(self, app: Flask, settings: Settings):
        self.app = app
        self.settings = settings
        url = settings.job_broker_url
        self.in_process = not url
        self.broker: dramatiq.Broker
        if url:
            client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
            self.broker = RedisBroker(client=client, namespace=app.config.get("JOB_BROKER_NAMESPACE", "usher"),
                                      heartbeat_timeout=settings.job_heartbeat_timeout_seconds * 1000,
                                      # Look for dead workers' messages on ~1 in 50 broker calls (default 1 in 1000).
                                      maintenance_chance=20_000)
        else:
            self.broker = StubBroker()
        self.deliver = dramatiq.Actor(self._deliver, broker=self.broker, actor_name="deliver_webhook",
                                      queue_name=QUEUE, priority=0,
                                      # The delivery row, not the message, counts attempts; this only
                                      # bounds re-sends of a message that keeps finding its delivery busy.
                                      options={"max_retries": 4 * len(webhooks.retry_schedule(app.config)),
                                               "time_limit": 60_000})
        self._worker: dramatiq.Worker | None = None
        self._worker_pid: int | None = None
        self._lock = threading.Lock()

    def _deliver(self, endpoint_id: str, event_id: str) -> None:
        with self.app.app_context():
            webhooks.deliver(self.app, endpoint_id, event_id)

    def enqueue(self, endpoint_id: str, event_id: str) -> None:
        """Hand one delivery to the engine. Never raises: a delivery that could not be handed over
        stays pending in the database and the workers' sweep sends it later."""
        try:
            if self.in_process:
                self._ensure_worker()
            self.deliver.send(endpoint_id, event_id)
        except Exception as exc:  # noqa: BLE001 - the request that caused the event must not fail
            log.warning("could not enqueue webhook delivery %s/%s: %s", endpoint_id, event_id, type(exc).__name__)

    def _ensure_worker(self) -> None:
        """The in-process worker, started on first use in each process (gunicorn forks)."""
        if self._worker is not None and self._worker_pid == os.getpid():
            return
        with self._lock:
            if self._worker is None or self._worker_pid != os.getpid():
                self._worker = self.worker(threads=self.settings.job_worker_threads)
                self._worker.start()
                self._worker_pid = os.getpid()

    def worker(self, threads: int) -> dramatiq.Worker:
        return dramatiq.Worker(self.broker, queues={QUEUE}, worker_threads=threads, worker_timeout=200)

    def sweep(self) -> int:
        """Send again the deliveries that are due but that no message carries (the broker was
        down when they were made, or lost its data); returns how many. Duplicates are harmless:
        a delivery is claimed in the database before each attempt."""
        with self.app.app_context():
            due = webhooks.stranded(self.app)
        for endpoint_id, event_id in due:
            self.deliver.send(endpoint_id, event_id)
        return len(due)

    def stop(self) -> None:
        if self._worker is not None and self._worker_pid == os.getpid():
            self._worker.stop(timeout=5000)
            self._worker = None
        self.broker.close()


def register_jobs(app: Flask, settings: Settings) -> Jobs:
    jobs = Jobs(app, settings)
    app.extensions["jobs"] = jobs
    return jobs
