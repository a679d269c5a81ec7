"""Events out: endpoints, Standard Webhooks signatures verified by the `standardwebhooks` library
on a real loopback receiver, the outbox, retries and their record, SSRF rules.

Deliveries here run on Dramatiq's in-process worker (JOB_BROKER_URL unset); the real worker
process on PostgreSQL + Redis is in test_webhook_worker.py."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import socket
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app import create_app
from app.events import EVENT_TYPES, SessionCreated
from app.jobs import QUEUE
from app.jobs import webhooks as delivery_job
from app.models import AuthSession, WebhookEndpoint, WebhookEvent
from app.services import webhooks as endpoint_rules
from tests.helpers import Actions, TenantActions, bearer, consumer, publishable, secret
from tests.receiver import Receiver

FAST = [0.2, 0.2, 0.2, 0.2, 0.2, 0.2]  # the contract's schedule, compressed, for the tests that wait it out


@pytest.fixture(scope="module")
def hooks_app(app_config):
    """An app of its own: a compressed retry schedule, and its own in-process worker."""
    app = create_app({**app_config, "WEBHOOK_RETRY_SCHEDULE": FAST, "OTP_EMAIL_SENDER": "console"})
    yield app
    app.extensions["jobs"].stop()
    app.extensions["usher"].db.dispose()


def closing_client(app):
    """A test client that closes each response as a WSGI server does once it has sent it: the
    request's deliveries are handed to the job engine then (`Response.call_on_close`)."""
    client = app.test_client()
    open_ = client.open

    def open_and_close(*args, **kwargs):
        response = open_(*args, **kwargs)
        response.get_data()
        response.close()
        return response

    client.open = open_and_close
    return client


@pytest.fixture
def client(hooks_app):
    return closing_client(hooks_app)


@pytest.fixture
def org(hooks_app, client):
    return Actions(hooks_app, client).create_org()


def _endpoint(client, sk: str, url: str, events=EVENT_TYPES) -> dict:
    response = client.post("/api/v1/webhook-endpoints", json={"url": url, "events": list(events)},
                           headers=secret(sk))
    assert response.status_code == 201, response.json
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json["secret"].startswith("whsec_")
    return response.json


def _deliveries(client, sk: str, endpoint_id: str) -> list[dict]:
    response = client.get(f"/api/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=secret(sk))
    assert response.status_code == 200, response.json
    return response.json["data"]


def _settled(client, sk: str, endpoint_id: str, count: int, timeout: float = 20) -> list[dict]:
    """Poll the deliveries list until `count` deliveries exist and none is pending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = _deliveries(client, sk, endpoint_id)
        if len(data) >= count and all(d["status"] != "pending" for d in data):
            return data
        time.sleep(0.05)
    raise AssertionError(_deliveries(client, sk, endpoint_id))


def _engine_idle(app, timeout: float = 20) -> None:
    """Wait until the job engine holds no message: none queued, delayed (a retry) or running. A
    delivery that must not happen would have run by then, however slow the machine (a fixed sleep
    proves nothing on a slow one)."""
    app.extensions["jobs"].broker.join(QUEUE, timeout=int(timeout * 1000), fail_fast=False)


def _every_event(client, keys: dict, org_id: str) -> None:
    """Cause each of the six event types once in this tenant."""
    tenant = TenantActions(client, keys, org_id)
    guest = tenant.guest()  # consumer.created, session.created
    code = client.post("/api/v1/auth/external/authorize", headers=secret(keys["secretKey"]),
                       json={"provider": "shop", "issuer": "https://shop.example", "subject": "u1"}).json
    exchanged = client.post("/api/v1/auth/external/exchange", json={"exchangeCode": code["exchangeCode"]},
                            headers=consumer(keys["publishableKey"], guest["accessToken"]))
    assert exchanged.status_code == 200  # consumer.created, consumer.merged, session.revoked, session.created
    replay = client.post("/api/v1/auth/external/exchange", json={"exchangeCode": code["exchangeCode"]},
                         headers=publishable(keys["publishableKey"]))
    assert replay.status_code == 401  # exchange_code.replayed, session.revoked
    other = tenant.guest()
    first = tenant.refresh(other["refreshToken"])
    assert first.status_code == 200
    usher = client.application.extensions["usher"]
    step = usher.settings.refresh_grace_seconds + 1
    usher.clock.advance(step)  # past the grace window (no sleeping)
    try:
        assert tenant.refresh(other["refreshToken"]).json["error"] == "refresh_token_reused"
    finally:
        usher.clock.advance(-step)


@contextlib.contextmanager
def settings(app, **changes):
    """The app's settings with some values changed, for one block."""
    usher = app.extensions["usher"]
    before = usher.settings
    usher.settings = dataclasses.replace(before, **changes)
    try:
        yield
    finally:
        usher.settings = before


EXPECTED = {"consumer.created": 2 + 1, "session.created": 3, "consumer.merged": 1, "session.revoked": 3,
            "exchange_code.replayed": 1, "refresh_token.reused": 1}


@pytest.mark.parametrize("mode", ["test", "live"])
def test_every_event_type_arrives_signed_and_verifiable(hooks_app, client, org, tmp_path, monkeypatch, mode):
    keys = org["keys"][mode]
    tls = tmp_path if mode == "live" else None
    with Receiver(tls_dir=tls) as receiver, settings(hooks_app, webhook_ca_file=getattr(receiver, "ca_file", None)):
        if mode == "live":
            # Live mode needs https to a public address: the receiver is https on loopback with its
            # own CA, and loopback counts as public for this test only (the rules are tested below).
            monkeypatch.setattr(endpoint_rules, "_allowed", lambda address, mode: True)
        endpoint = _endpoint(client, keys["secretKey"], receiver.url)
        receiver.secrets.append(endpoint["secret"])
        _every_event(client, keys, org["organizationId"])
        total = sum(EXPECTED.values())
        received = receiver.wait_for(total)
        deliveries = _settled(client, keys["secretKey"], endpoint["id"], total)
    assert all(r["event"] is not None for r in received), "every delivery verifies with the library"
    types = [r["event"]["type"] for r in received]
    assert {t: types.count(t) for t in EXPECTED} == EXPECTED
    for r in received:
        assert r["headers"]["webhook-signature"].startswith("v1,")
        assert r["event"]["data"] and r["event"]["timestamp"].endswith("Z")
        assert set(r["event"]) == {"type", "timestamp", "data"}
    assert len({r["headers"]["webhook-id"] for r in received}) == total
    assert {d["status"] for d in deliveries} == {"succeeded"}
    assert all(d["attempts"] == 1 and d["lastResponseStatus"] == 200 for d in deliveries)
    reused = next(r["event"]["data"] for r in received if r["event"]["type"] == "refresh_token.reused")
    revoked = [r["event"]["data"] for r in received if r["event"]["type"] == "session.revoked"]
    assert {"sessionId": reused["sessionId"], "consumerId": reused["consumerId"],
            "reason": "refresh_token_reused"} in revoked


def test_an_endpoint_gets_only_the_types_it_lists(client, org):
    keys = org["keys"]["test"]
    with Receiver() as receiver:
        endpoint = _endpoint(client, keys["secretKey"], receiver.url, events=["session.revoked"])
        receiver.secrets.append(endpoint["secret"])
        tenant = TenantActions(client, keys, org["organizationId"])
        guest = tenant.guest()
        assert client.post("/api/v1/auth/logout", headers=bearer(guest["accessToken"])).status_code == 204
        received = receiver.wait_for(1)
        _settled(client, keys["secretKey"], endpoint["id"], 1)
    assert [r["event"]["type"] for r in received] == ["session.revoked"]
    assert received[0]["event"]["data"] == {"sessionId": guest["session"]["sessionId"],
                                            "consumerId": guest["session"]["consumerId"], "reason": "logout_local"}
    assert len(_deliveries(client, keys["secretKey"], endpoint["id"])) == 1


def test_other_tenants_and_modes_hear_nothing(client, org, hooks_app):
    with Receiver() as receiver:
        endpoint = _endpoint(client, org["keys"]["test"]["secretKey"], receiver.url)
        other = Actions(hooks_app, client).create_org("Other")
        TenantActions(client, other["keys"]["test"], other["organizationId"]).guest()
        # The same organization's live mode does not reach a test-mode endpoint either.
        assert client.post("/api/v1/auth/guest", headers=publishable(org["keys"]["live"]["publishableKey"])
                           ).status_code == 201
        _engine_idle(hooks_app)  # every delivery those requests handed to the engine has run
        assert receiver.received == []
        assert client.get(f"/api/v1/webhook-endpoints/{endpoint['id']}",
                          headers=secret(other["keys"]["test"]["secretKey"])).status_code == 404
        assert client.get(f"/api/v1/webhook-endpoints/{endpoint['id']}",
                          headers=secret(org["keys"]["live"]["secretKey"])).status_code == 404
        assert client.get("/api/v1/webhook-endpoints", headers=secret(org["keys"]["live"]["secretKey"])
                          ).json["data"] == []


def test_a_failing_receiver_is_retried_and_each_attempt_recorded(client, org):
    keys = org["keys"]["test"]
    with Receiver(statuses=[500, 503]) as receiver:
        endpoint = _endpoint(client, keys["secretKey"], receiver.url, events=["session.created"])
        receiver.secrets.append(endpoint["secret"])
        TenantActions(client, keys).guest()
        received = receiver.wait_for(3)
        [delivery] = _settled(client, keys["secretKey"], endpoint["id"], 1)
    assert len({r["headers"]["webhook-id"] for r in received}) == 1  # the same message each time
    assert delivery == {"id": received[0]["headers"]["webhook-id"], "eventType": "session.created",
                        "status": "succeeded", "attempts": 3, "lastResponseStatus": 200, "lastError": None,
                        "nextAttemptAt": None}
    assert len(receiver.processed) == 1
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(received)]
    assert all(gap >= 0.15 for gap in gaps), gaps  # waited the (compressed) backoff between attempts


def test_a_receiver_that_never_succeeds_ends_failed_after_the_schedule(client, org, caplog):
    """The reason of each failed attempt is logged (WARNING) and the last one is in the API (`lastError`)."""
    keys = org["keys"]["test"]
    with Receiver(statuses=[500] * 20) as receiver:
        endpoint = _endpoint(client, keys["secretKey"], receiver.url, events=["session.created"])
        receiver.secrets.append(endpoint["secret"])
        TenantActions(client, keys).guest()
        [delivery] = _settled(client, keys["secretKey"], endpoint["id"], 1)
        _engine_idle(client.application)  # an eighth attempt would be a message still queued or delayed
        assert len(receiver.received) == 1 + len(FAST)  # the first attempt and six retries, no more
    assert delivery["status"] == "failed" and delivery["attempts"] == 7
    assert delivery["lastResponseStatus"] == 500 and delivery["nextAttemptAt"] is None
    assert delivery["lastError"] == "HTTP 500"
    failures = [r.getMessage() for r in caplog.records if r.name == "usher.webhooks" and r.levelname == "WARNING"
                and delivery["id"] in r.getMessage()]
    assert len(failures) == 7 and failures[-1].endswith("attempt 7 failed for good: HTTP 500"), failures
    assert all(message.endswith("will be retried: HTTP 500") for message in failures[:-1])


def test_the_contract_backoff_is_the_default(app):
    """With the real schedule (the default app): after a failed first attempt the next one is
    due 5 s later, and the engine holds it (we do not wait it out)."""
    assert delivery_job.RETRY_SCHEDULE == (5, 300, 1800, 7200, 18000, 36000)
    assert delivery_job.retry_schedule(app.config) == delivery_job.RETRY_SCHEDULE
    assert app.extensions["usher"].settings.webhook_timeout_seconds == 10  # the contract's timeout
    client = closing_client(app)
    org = Actions(app, client).create_org()
    keys = org["keys"]["test"]
    with Receiver(statuses=[500]) as receiver:
        endpoint = _endpoint(client, keys["secretKey"], receiver.url, events=["session.created"])
        receiver.secrets.append(endpoint["secret"])
        TenantActions(client, keys).guest()
        receiver.wait_for(1)
        deadline = time.monotonic() + 10
        while (delivery := _deliveries(client, keys["secretKey"], endpoint["id"])[0])["attempts"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        recorded_at = datetime.now(UTC)
        assert delivery["status"] == "pending" and delivery["lastResponseStatus"] == 500
        due = datetime.fromisoformat(delivery["nextAttemptAt"])
        assert timedelta(seconds=3) <= due - recorded_at <= timedelta(seconds=6), (due, recorded_at)
        assert len(receiver.received) == 1
        client.delete(f"/api/v1/webhook-endpoints/{endpoint['id']}", headers=secret(keys["secretKey"]))
    app.extensions["jobs"].stop()


def test_a_hanging_receiver_does_not_slow_sign_in(hooks_app, client, org):
    keys = org["keys"]["test"]
    with settings(hooks_app, webhook_timeout_seconds=2), Receiver(hang=30) as receiver:
        receiver.hang_count = 1000  # every request hangs
        endpoint = _endpoint(client, keys["secretKey"], receiver.url, events=["session.created"])
        receiver.secrets.append(endpoint["secret"])
        tenant = TenantActions(client, keys)
        timings = []
        for _ in range(20):
            started = time.perf_counter()
            tenant.guest()
            timings.append(time.perf_counter() - started)
        receiver.wait_for(1)
        deadline = time.monotonic() + 10
        while not any(d["attempts"] for d in _deliveries(client, keys["secretKey"], endpoint["id"])):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        timed_out = next(d for d in _deliveries(client, keys["secretKey"], endpoint["id"]) if d["attempts"])
        client.delete(f"/api/v1/webhook-endpoints/{endpoint['id']}", headers=secret(keys["secretKey"]))
    assert max(timings) < 0.5, timings  # each sign-in answered while the receiver hung
    assert timed_out["status"] == "pending" and timed_out["lastResponseStatus"] is None


def test_rotation_signs_with_both_secrets_until_the_old_one_expires(client, org):
    keys = org["keys"]["test"]
    with Receiver() as receiver:
        endpoint = _endpoint(client, keys["secretKey"], receiver.url, events=["session.created"])
        old = endpoint["secret"]
        receiver.secrets.append(old)
        rotated = client.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/rotate-secret",
                              json={"expiresIn": 3600}, headers=secret(keys["secretKey"]))
        assert rotated.status_code == 201 and rotated.headers["Cache-Control"] == "no-store"
        new = rotated.json["secret"]
        receiver.secrets.append(new)
        assert new != old and rotated.json["id"] == endpoint["id"]
        TenantActions(client, keys).guest()
        [overlap] = receiver.wait_for(1)
        again = client.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", json={"expiresIn": 0},
                            headers=secret(keys["secretKey"]))
        newest = again.json["secret"]
        receiver.secrets.append(newest)
        TenantActions(client, keys).guest()
        after = receiver.wait_for(2)[1]
    signatures = overlap["headers"]["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    for key in (old, new):  # each secret alone verifies the overlapping delivery
        assert Webhook(key).verify(overlap["body"], overlap["headers"])["type"] == "session.created"
    assert len(after["headers"]["webhook-signature"].split(" ")) == 1
    Webhook(newest).verify(after["body"], after["headers"])
    for key in (old, new):
        with pytest.raises(WebhookVerificationError):
            Webhook(key).verify(after["body"], after["headers"])


@pytest.mark.parametrize("url", ["http://93.184.216.34/hooks", "https://127.0.0.1/hooks", "https://localhost/hooks",
                                 "https://[::1]/hooks", "https://10.0.0.7/hooks", "https://192.168.1.2/hooks",
                                 "https://169.254.169.254/latest", "https://100.64.0.1/", "https://0.0.0.0/",
                                 "https://[::ffff:127.0.0.1]/", "https://[fe80::1]/", "ftp://93.184.216.34/",
                                 "https://user:pw@93.184.216.34/", "https://no-such-host.invalid/", "https://[::1/",
                                 "https://93.184.216.34:99999/", "not a url"])
def test_live_mode_refuses_http_private_and_loopback_urls(client, org, url):
    response = client.post("/api/v1/webhook-endpoints", json={"url": url, "events": ["session.created"]},
                           headers=secret(org["keys"]["live"]["secretKey"]))
    assert response.status_code == 400 and response.json["error"] == "validation_error"
    assert "url" in response.json["details"]
    assert client.get("/api/v1/webhook-endpoints", headers=secret(org["keys"]["live"]["secretKey"])
                      ).json["data"] == []


@pytest.mark.parametrize(("url", "allowed"), [("http://127.0.0.1:9/hooks", True), ("http://localhost:9/", True),
                                              ("http://10.0.0.7/", False), ("http://169.254.169.254/", False),
                                              ("http://192.168.1.2/", False)])
def test_test_mode_allows_http_and_loopback_only(client, org, url, allowed):
    response = client.post("/api/v1/webhook-endpoints", json={"url": url, "events": ["session.created"]},
                           headers=secret(org["keys"]["test"]["secretKey"]))
    assert response.status_code == (201 if allowed else 400), response.json


def test_addresses_are_checked_again_at_delivery(client, org, monkeypatch):
    """DNS rebinding: the name resolved to loopback when the endpoint was made, to a private
    address at delivery. The attempt is refused and recorded; no connection is made."""
    keys = org["keys"]["test"]
    real = socket.getaddrinfo
    answers = {"rebind.example": "127.0.0.1"}

    def fake_getaddrinfo(host, *args, **kwargs):
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], args[0] if args else 80))]
        return real(host, *args, **kwargs)

    connections = []
    monkeypatch.setattr(endpoint_rules.socket, "getaddrinfo", fake_getaddrinfo)
    monkeypatch.setattr(delivery_job.socket, "create_connection",
                        lambda address, *a, **k: connections.append(address) or pytest.fail("connected"))
    endpoint = _endpoint(client, keys["secretKey"], "http://rebind.example:9/hooks", events=["session.created"])
    answers["rebind.example"] = "10.1.2.3"
    TenantActions(client, keys).guest()
    deadline = time.monotonic() + 10
    while not (d := _deliveries(client, keys["secretKey"], endpoint["id"])) or d[0]["attempts"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    client.delete(f"/api/v1/webhook-endpoints/{endpoint['id']}", headers=secret(keys["secretKey"]))
    assert connections == []
    assert d[0]["lastResponseStatus"] is None


def test_secrets_are_shown_once_and_sealed_at_rest(hooks_app, client, org):
    keys = org["keys"]["test"]
    endpoint = _endpoint(client, keys["secretKey"], "http://127.0.0.1:9/hooks", events=["session.created"])
    listed = client.get("/api/v1/webhook-endpoints", headers=secret(keys["secretKey"])).json["data"]
    got = client.get(f"/api/v1/webhook-endpoints/{endpoint['id']}", headers=secret(keys["secretKey"])).json
    assert [e["id"] for e in listed] == [endpoint["id"]]
    assert "secret" not in listed[0] and "secret" not in got
    assert got == {k: endpoint[k] for k in ("id", "url", "events", "description", "createdAt")}
    with hooks_app.extensions["usher"].db.transaction() as session:
        row = session.get(WebhookEndpoint, endpoint["id"])
        raw = endpoint["secret"].encode()
        assert raw not in row.secret_sealed and raw.split(b"_", 1)[1] not in row.secret_sealed
    assert client.delete(f"/api/v1/webhook-endpoints/{endpoint['id']}", headers=secret(keys["secretKey"])
                         ).status_code == 204
    assert client.get(f"/api/v1/webhook-endpoints/{endpoint['id']}", headers=secret(keys["secretKey"])
                      ).status_code == 404
    assert client.post("/api/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/", "events": ["nope"]},
                       headers=secret(keys["secretKey"])).json["error"] == "validation_error"
    assert client.get("/api/v1/webhook-endpoints", headers=publishable(keys["publishableKey"])).status_code == 403


def _events_stored(hooks_app, org_id: str) -> int:
    with hooks_app.extensions["usher"].db.transaction() as session:
        return session.scalar(select(func.count()).select_from(WebhookEvent)
                              .where(WebhookEvent.organization_id == org_id))


def test_no_listener_writes_nothing_and_a_listener_writes_in_the_same_transaction(hooks_app, client, org):
    keys = org["keys"]["test"]
    tenant = TenantActions(client, keys, org["organizationId"])
    tenant.guest()
    assert _events_stored(hooks_app, org["organizationId"]) == 0  # no endpoint: no outbox row at all
    endpoint = _endpoint(client, keys["secretKey"], "http://127.0.0.1:9/hooks", events=["session.created"])
    guest = tenant.guest()
    assert _events_stored(hooks_app, org["organizationId"]) == 1
    with hooks_app.extensions["usher"].db.transaction() as session:
        event = session.scalar(select(WebhookEvent).where(WebhookEvent.organization_id == org["organizationId"]))
        stored = session.get(AuthSession, guest["session"]["sessionId"])
        assert guest["session"]["sessionId"] in event.body and stored is not None
    client.delete(f"/api/v1/webhook-endpoints/{endpoint['id']}", headers=secret(keys["secretKey"]))


def test_an_event_of_a_change_that_rolled_back_is_never_stored(hooks_app, client, org):
    keys = org["keys"]["test"]
    endpoint = _endpoint(client, keys["secretKey"], "http://127.0.0.1:9/hooks", events=["session.created"])
    events = hooks_app.extensions["events"]
    with (hooks_app.test_request_context(), pytest.raises(RuntimeError),
          hooks_app.extensions["usher"].db.write() as connection):
        assert events.record(connection, SessionCreated(organization_id=org["organizationId"], mode="test",
                                                        session_id="sess_x", consumer_id="cons_x", session_type="otp"))
        raise RuntimeError("the change fails after the event was written")
    assert _events_stored(hooks_app, org["organizationId"]) == 0
    assert _deliveries(client, keys["secretKey"], endpoint["id"]) == []


def test_webhook_endpoints_need_their_scope_and_every_change_is_audited(client, org):
    """`webhooks:write` reaches the endpoints, another scope gets 403 naming it; creation, secret
    rotation and deletion are audit events with the key as actor and never the secret."""
    from tests.test_restricted_keys import restricted

    sk = org["keys"]["test"]["secretKey"]
    writer = restricted(client, sk, "webhooks:write")
    reader = restricted(client, sk, "experiences:read")
    body = {"url": "http://127.0.0.1:9/hooks", "events": ["session.created"]}
    refused = client.post("/api/v1/webhook-endpoints", json=body, headers=secret(reader))
    assert refused.status_code == 403
    assert refused.json["error"] == "insufficient_scope"
    assert refused.json["details"] == {"required": ["webhooks:write"]}
    assert client.get("/api/v1/webhook-endpoints", headers=secret(reader)).status_code == 403
    created = client.post("/api/v1/webhook-endpoints", json=body, headers=secret(writer))
    assert created.status_code == 201
    endpoint_id, first_secret = created.json["id"], created.json["secret"]
    rotated = client.post(f"/api/v1/webhook-endpoints/{endpoint_id}/rotate-secret", json={"expiresIn": 60},
                          headers=secret(writer))
    assert rotated.status_code == 201
    assert client.delete(f"/api/v1/webhook-endpoints/{endpoint_id}", headers=secret(writer)).status_code == 204
    events = client.get("/api/v1/audit-events?limit=100", headers=secret(sk)).json["data"]
    mine = [e for e in events if e["type"].startswith("webhook_endpoint.")]
    assert [e["type"] for e in mine] == ["webhook_endpoint.deleted", "webhook_endpoint.secret_rotated",
                                        "webhook_endpoint.created"]
    assert all(e["target"] == {"type": "webhook_endpoint", "id": endpoint_id} for e in mine)
    assert all(e["actor"]["type"] == "key" for e in mine)
    text = str(events)
    assert first_secret not in text and rotated.json["secret"] not in text
    assert first_secret.removeprefix("whsec_") not in text
