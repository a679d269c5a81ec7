"""`flask --app wsgi purge`: aged rows go, live ones stay, counts are printed as JSON, a second
run finds nothing, several copies at once share the work, and traffic goes on beside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select
from ulid import ULID

from app.db import Database, utcnow
from app.models import (
    AuthSession,
    CapturedMessage,
    Consumer,
    ExchangeCode,
    OtpCode,
    QueueEntry,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from app.services.purge import Purge
from tests.artifacts import record
from tests.conftest import APP_SECRET
from tests.helpers import TenantActions, publishable, secret
from tests.live import ROOT, http
from tests.load import Load, start_clients

DAY = timedelta(days=1)


def old_id(prefix: str, age: timedelta) -> str:
    return f"{prefix}_{ULID.from_datetime(utcnow() - age)}"


class Aged:
    """Rows of one organization and mode, made with timestamps in the past."""

    def __init__(self, app, org_id: str, mode: str = "test"):
        self.db, self.org_id, self.mode = app.extensions["usher"].db, org_id, mode

    def consumer(self, prefix: str, age: timedelta) -> str:
        consumer_id = old_id(prefix, age)
        with self.db.transaction() as session:
            session.add(Consumer(id=consumer_id, organization_id=self.org_id, mode=self.mode,
                                 created_at=utcnow() - age))
        return consumer_id

    def session(self, consumer_id: str, age: timedelta, expires_in: timedelta,
                revoked_ago: timedelta | None = None) -> str:
        now = utcnow()
        session_id = old_id("sess", age)
        with self.db.transaction() as session:
            session.add(AuthSession(id=session_id, organization_id=self.org_id, mode=self.mode,
                                    consumer_id=consumer_id, type="guest", created_at=now - age,
                                    expires_at=now + expires_in, refresh_hash="0" * 64,
                                    revoked_at=now - revoked_ago if revoked_ago is not None else None,
                                    generation_kid="k", generation_iat=0, generation_access_exp=0,
                                    generation_refresh_exp=0))
        return session_id

    def otp(self, identifier: str, expired_ago: timedelta) -> int:
        with self.db.transaction() as session:
            row = OtpCode(organization_id=self.org_id, mode=self.mode, identifier=identifier, channel="email",
                          code_hash="0" * 64, expires_at=utcnow() - expired_ago, created_at=utcnow() - expired_ago)
            session.add(row)
            session.flush()
            return row.id

    def exchange_code(self, marker: str, expired_ago: timedelta) -> str:
        code_hash = (marker * 64)[:64]
        with self.db.transaction() as session:
            session.add(ExchangeCode(code_hash=code_hash, organization_id=self.org_id, mode=self.mode, provider="p",
                                     issuer="https://i.example", subject="s", created_at=utcnow() - expired_ago,
                                     expires_at=utcnow() - expired_ago))
        return code_hash

    def captured(self, age: timedelta) -> str:
        message_id = old_id("msg", age)
        with self.db.transaction() as session:
            session.add(CapturedMessage(id=message_id, organization_id=self.org_id, mode=self.mode, channel="email",
                                        recipient="a@example.com", body_sealed=b"x", created_at=utcnow() - age))
        return message_id

    def delivery(self, age: timedelta) -> tuple[str, str]:
        now = utcnow()
        endpoint_id, event_id = old_id("we", age), old_id("msg", age)
        with self.db.transaction() as session:
            session.add(WebhookEndpoint(id=endpoint_id, organization_id=self.org_id, mode=self.mode,
                                        url="http://127.0.0.1:9/", events=["session.created"],
                                        secret_sealed=b"x", created_at=now - age))
            session.add(WebhookEvent(id=event_id, organization_id=self.org_id, mode=self.mode, type="session.created",
                                     body="{}", created_at=now - age))
            session.flush()
            session.add(WebhookDelivery(endpoint_id=endpoint_id, event_id=event_id, organization_id=self.org_id,
                                        mode=self.mode, event_type="session.created", status="succeeded",
                                        attempts=1, created_at=now - age))
        return endpoint_id, event_id

    def exists(self, model, key) -> bool:
        with self.db.transaction() as session:
            return session.get(model, key) is not None


def run_purge(app, *args: str) -> dict:
    result = app.test_cli_runner().invoke(args=["purge", *args])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("database: ")  # every command names its database, apart from its JSON
    return json.loads(result.stdout)  # stderr names the database


def test_purge_deletes_only_what_nobody_can_use(app, org, tenant):
    aged = Aged(app, org["organizationId"])
    month, long = timedelta(days=31), timedelta(days=60)
    # Sessions: expired or revoked more than 30 days ago go; the rest stay.
    owner = aged.consumer("cons", long)
    gone_sessions = [aged.session(owner, long, expires_in=-month), aged.session(owner, long, DAY, revoked_ago=month)]
    kept_sessions = [aged.session(owner, long, expires_in=-DAY * 10), aged.session(owner, long, DAY * 5),
                     aged.session(owner, long, DAY, revoked_ago=DAY * 10)]
    # Guests: old, no live session, no queue place go (with their dead sessions).
    lapsed = aged.consumer("guest", long)
    lapsed_session = aged.session(lapsed, long, expires_in=-DAY)
    alone = aged.consumer("guest", long)
    live_guest = aged.consumer("guest", long)
    aged.session(live_guest, long, DAY)
    queued_guest = aged.consumer("guest", long)
    queue = tenant.queue()
    with app.extensions["usher"].db.transaction() as session:
        session.add(QueueEntry(queue_id=queue["id"], consumer_id=queued_guest, sequence=1))
    young_guest = aged.consumer("guest", DAY * 5)
    old_identified = aged.consumer("cons", long)
    otp_gone, otp_kept = aged.otp("old@example.com", DAY * 2), aged.otp("new@example.com", timedelta(hours=1))
    code_gone, code_kept = aged.exchange_code("a", DAY * 2), aged.exchange_code("b", timedelta(hours=1))
    message_gone, message_kept = aged.captured(DAY * 8), aged.captured(DAY * 6)
    delivery_gone, delivery_kept = aged.delivery(month), aged.delivery(DAY * 29)

    counts = run_purge(app, "--batch-size", "2")  # small batches: the loop is exercised too

    assert list(counts) == ["sessions", "guests", "otpCodes", "exchangeCodes", "capturedMessages",
                            "webhookDeliveries", "webhookEvents"]
    assert counts["sessions"] >= 2 and counts["guests"] >= 2 and counts["otpCodes"] >= 1
    assert counts["exchangeCodes"] >= 1 and counts["capturedMessages"] >= 1
    assert counts["webhookDeliveries"] >= 1 and counts["webhookEvents"] >= 1
    assert not any(aged.exists(AuthSession, s) for s in [*gone_sessions, lapsed_session])
    assert all(aged.exists(AuthSession, s) for s in kept_sessions)
    assert not aged.exists(Consumer, lapsed) and not aged.exists(Consumer, alone)
    assert all(aged.exists(Consumer, c) for c in (live_guest, queued_guest, young_guest, old_identified, owner))
    assert not aged.exists(OtpCode, otp_gone) and aged.exists(OtpCode, otp_kept)
    assert not aged.exists(ExchangeCode, code_gone) and aged.exists(ExchangeCode, code_kept)
    assert not aged.exists(CapturedMessage, message_gone) and aged.exists(CapturedMessage, message_kept)
    assert not aged.exists(WebhookDelivery, delivery_gone) and aged.exists(WebhookDelivery, delivery_kept)
    assert not aged.exists(WebhookEvent, delivery_gone[1]) and aged.exists(WebhookEvent, delivery_kept[1])
    # What stays still works: the live guest's organization serves, and a second run finds nothing.
    assert run_purge(app) == dict.fromkeys(counts, 0)
    assert TenantActions(tenant.client, org["keys"]["test"]).guest()["session"]["type"] == "guest"


def test_several_purges_at_once_share_the_work(app, org):
    aged = Aged(app, org["organizationId"])
    owner = aged.consumer("cons", timedelta(days=90))
    sessions = [aged.session(owner, timedelta(days=90), expires_in=-timedelta(days=40)) for _ in range(120)]
    db_url = app.extensions["usher"].settings.database_url
    results, errors = [], []

    def purge():
        db = Database(db_url)
        try:
            results.append(Purge(db, utcnow(), batch=10).run())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=purge) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert sum(r["sessions"] for r in results) >= len(sessions)  # each row counted by exactly one copy
    assert not any(aged.exists(AuthSession, s) for s in sessions)
    with app.extensions["usher"].db.transaction() as session:
        assert session.scalars(select(AuthSession.id).where(AuthSession.id.in_(sessions))).all() == []


@pytest.mark.gunicorn
def test_sessions_in_use_keep_refreshing_while_purge_runs_in_a_loop(live_server, app, org):
    """A refresh load (and guest sign-ins) on gunicorn; `flask --app wsgi purge` processes run
    again and again beside it over a few thousand aged rows. Every request succeeds."""
    aged = Aged(app, org["organizationId"])
    owner = aged.consumer("cons", timedelta(days=90))
    doomed = [aged.session(owner, timedelta(days=90), expires_in=-timedelta(days=40)) for _ in range(300)]
    guests = [aged.consumer("guest", timedelta(days=90)) for _ in range(300)]
    keys = org["keys"]["test"]
    clients = start_clients(live_server.url, keys["publishableKey"], 6, extra=["guest"])
    env = {**os.environ, "DATABASE_URL": app.extensions["usher"].settings.database_url, "APP_SECRET": APP_SECRET}
    runs = []
    with Load(clients) as load:
        started = time.monotonic()
        while len(runs) < 3 or time.monotonic() - started < 8:
            result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "purge", "--batch-size", "50"],
                                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
            assert result.returncode == 0, result.stderr
            runs.append(json.loads(result.stdout))
    statuses = load.counts()
    record("events.json", f"purge beside a refresh load ({app.extensions['usher'].db.engine.dialect.name})",
           {"purge_runs": len(runs), "deleted": {k: sum(r[k] for r in runs) for k in runs[0]},
            "request_statuses": dict(statuses)})
    assert set(statuses) <= {200, 201}, statuses
    assert statuses[200] > 50, statuses
    assert sum(r["sessions"] for r in runs) >= len(doomed) and sum(r["guests"] for r in runs) >= len(guests)
    assert not any(aged.exists(AuthSession, s) for s in doomed[:20])
    assert not any(aged.exists(Consumer, g) for g in guests[:20])
    for client in clients:  # every session in use is still there and refreshes
        reply = http("POST", live_server.url + "/api/v1/auth/refresh", publishable(keys["publishableKey"]),
                     {"refreshToken": client.refresh_token})
        assert reply.status == 200, reply.body
    assert http("GET", live_server.url + "/api/v1/consumers?limit=1", secret(keys["secretKey"])).status == 200
