"""Queues: admin create/list/get, consumer enter/status/leave, first come under concurrency."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from app.models import QueueEntry
from tests.helpers import TenantActions, consumer, publishable, secret
from tests.live import http
from tests.test_sessions import race


def _iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_admin_creates_lists_and_gets_queues(tenant, client):
    queue = tenant.queue(capacity=10)
    assert queue["id"].startswith("queue_")
    assert queue["status"] == "OPEN" and queue["consumerCount"] == 0 and queue["capacity"] == 10
    assert set(queue) == {"id", "name", "experienceId", "sequenceId", "capacity", "admission", "openAt", "closeAt",
                          "timeZone", "status", "consumerCount"}
    listed = client.get(f"/api/v1/queues?experienceId={queue['experienceId']}", headers=secret(tenant.sk)).json
    assert [q["id"] for q in listed["data"]] == [queue["id"]]
    public = client.get(f"/api/v1/queues/{queue['id']}", headers=publishable(tenant.pk))
    assert public.status_code == 200 and public.json == queue
    bad = client.post("/api/v1/queues", json={"experienceId": "exp_nope", "name": "x"}, headers=secret(tenant.sk))
    assert bad.status_code == 400 and "experienceId" in bad.json["details"]
    bad = client.post("/api/v1/queues", json={"experienceId": queue["experienceId"], "name": "x", "capacity": 0},
                      headers=secret(tenant.sk))
    assert bad.status_code == 400 and "capacity" in bad.json["details"]


def test_enter_is_idempotent_and_first_come(tenant, client):
    queue = tenant.queue()
    guests = [tenant.guest() for _ in range(3)]
    path = f"/api/v1/queues/{queue['id']}"
    states = [client.post(f"{path}/enter", headers=consumer(tenant.pk, g["accessToken"])).json for g in guests]
    assert [s["position"] for s in states] == [1, 2, 3]
    assert set(states[0]) == {"queueId", "consumerId", "status", "position", "enteredAt", "admittedAt",
                              "admissionToken", "denyReason", "pollAfter"}
    assert states[0]["status"] == "QUEUED" and states[0]["consumerId"] == guests[0]["session"]["consumerId"]
    again = client.post(f"{path}/enter", headers=consumer(tenant.pk, guests[1]["accessToken"])).json
    assert again == states[1]
    left = client.post(f"{path}/leave", headers=consumer(tenant.pk, guests[0]["accessToken"])).json
    assert left["status"] == "LEFT" and left["position"] is None
    assert tenant.status(queue["id"], guests[2]["accessToken"]).json["position"] == 2
    back = client.post(f"{path}/enter", headers=consumer(tenant.pk, guests[0]["accessToken"])).json
    assert back["position"] == 3  # to the back of the line
    assert client.get(path, headers=publishable(tenant.pk)).json["consumerCount"] == 3


def test_status_before_entering_and_unknown_queues(tenant, client, actions):
    queue = tenant.queue()
    guest = tenant.guest()
    response = tenant.status(queue["id"], guest["accessToken"])
    assert response.status_code == 404 and response.json["error"] == "not_found"
    unknown = client.get("/api/v1/queues/queue_01HXYZ123456789ABCDEFGHJK", headers=publishable(tenant.pk))
    assert unknown.status_code == 404 and unknown.json == {"error": "not_found", "message": "Queue not found"}
    other = TenantActions(client, actions.create_org("Other")["keys"]["test"])
    assert client.get(f"/api/v1/queues/{queue['id']}", headers=publishable(other.pk)).status_code == 404
    other_guest = other.guest()
    entered = client.post(f"/api/v1/queues/{queue['id']}/enter", headers=consumer(other.pk, other_guest["accessToken"]))
    assert entered.status_code == 404


def test_pending_closed_and_full_queues_refuse_entry(tenant, client):
    guest = tenant.guest()
    for body, message in (({"openAt": _iso(timedelta(hours=1))}, "pending"),
                          ({"openAt": _iso(-timedelta(hours=2)), "closeAt": _iso(-timedelta(hours=1))}, "closed")):
        queue = tenant.queue(**body)
        assert queue["status"] == message.upper()
        response = client.post(f"/api/v1/queues/{queue['id']}/enter", headers=consumer(tenant.pk, guest["accessToken"]))
        assert response.status_code == 409 and message in response.json["message"]
    full = tenant.queue(capacity=1)
    assert client.post(f"/api/v1/queues/{full['id']}/enter",
                       headers=consumer(tenant.pk, guest["accessToken"])).status_code == 200
    late = tenant.guest()
    response = client.post(f"/api/v1/queues/{full['id']}/enter", headers=consumer(tenant.pk, late["accessToken"]))
    assert response.status_code == 409 and "full" in response.json["message"]


@pytest.mark.gunicorn
def test_fifty_concurrent_enters_get_distinct_first_come_positions_on_gunicorn(live_server, actions, client, app):
    tenant = TenantActions(client, actions.create_org()["keys"]["test"])
    queue = tenant.queue(capacity=100)
    guests = [http("POST", live_server.url + "/api/v1/auth/guest", publishable(tenant.pk)).body for _ in range(50)]
    url = f"{live_server.url}/api/v1/queues/{queue['id']}/enter"
    tokens = iter(g["accessToken"] for g in guests)
    lock = threading.Lock()

    def enter():
        with lock:
            token = next(tokens)
        return token, http("POST", url, consumer(tenant.pk, token))

    results = race(50, enter)
    assert [r.status for _, r in results] == [200] * 50, [r.body for _, r in results if r.status != 200]
    positions = sorted(r.body["position"] for _, r in results)
    assert positions == list(range(1, 51))
    # First come: positions follow the order in which the entries were written (under the queue lock).
    with app.extensions["usher"].db.sessionmaker() as session:
        written = session.scalars(select(QueueEntry.consumer_id).where(QueueEntry.queue_id == queue["id"])
                                  .order_by(QueueEntry.id)).all()
    position_of = {r.body["consumerId"]: r.body["position"] for _, r in results}
    assert [position_of[c] for c in written] == list(range(1, 51))
    # Stable: asking again, or entering again concurrently, changes nothing.
    token, first = results[0]
    repeats = race(10, lambda: http("POST", url, consumer(tenant.pk, token)))
    assert {r.body["position"] for r in repeats} == {first.body["position"]}
    status = http("GET", f"{live_server.url}/api/v1/queues/{queue['id']}/status", consumer(tenant.pk, token))
    assert status.body["position"] == first.body["position"]
    assert http("GET", f"{live_server.url}/api/v1/queues/{queue['id']}", publishable(tenant.pk)).body[
        "consumerCount"] == 50
