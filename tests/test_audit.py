"""The audit log: every change and security event, in the change's transaction, hash-chained per
organization and mode; `audit verify` names a tampered event; concurrent writers on gunicorn
leave one unbroken chain."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, delete, insert, select, update

from app.models import AuditChain, AuditEvent, Experience
from app.services import audit
from tests.conftest import APP_SECRET
from tests.helpers import bearer, publishable, secret
from tests.live import http
from tests.test_external import SEED_AUTHORIZE
from tests.test_sessions import race


def events(client, sk: str, **query) -> list[dict]:
    response = client.get("/api/v1/audit-events", query_string={"limit": 100, **query}, headers=secret(sk))
    assert response.status_code == 200, response.json
    return response.json["data"]


def chain_rows(app, organization_id: str, mode: str = "test") -> list[AuditEvent]:
    with app.extensions["usher"].db.transaction() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.organization_id == organization_id,
                                                             AuditEvent.mode == mode).order_by(AuditEvent.seq)))


def assert_chain_intact(app, organization_id: str, mode: str = "test") -> int:
    with app.extensions["usher"].db.reader() as connection:
        results = [r for r in audit.verify_chains(connection) if r[:2] == (organization_id, mode)]
    assert len(results) == 1 and results[0][3] is None, results
    return results[0][2]


def flask_cli(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url, "APP_SECRET": APP_SECRET}
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_every_change_and_security_event_is_recorded_with_actor_target_and_details(app, client, org, tenant):
    sk = tenant.sk
    key_id = next(k["id"] for k in client.get("/api/v1/keys", headers=secret(sk)).json["data"]
                  if k["type"] == "secret")
    created = client.post("/api/v1/keys", json={"type": "restricted", "scopes": ["audit:read"]}, headers=secret(sk))
    rolled = client.post(f"/api/v1/keys/{created.json['id']}/roll", json={"expiresIn": 60}, headers=secret(sk))
    assert client.delete(f"/api/v1/keys/{rolled.json['id']}", headers=secret(sk)).status_code == 204
    assert client.patch("/api/v1/settings", json={"otpLength": 8, "otpTtl": 300}, headers=secret(sk)).status_code == 200
    experience = client.post("/api/v1/experiences", json={"name": "Drop"}, headers=secret(sk)).json
    client.patch(f"/api/v1/experiences/{experience['id']}", json={"name": "Big drop"}, headers=secret(sk))
    queue = client.post("/api/v1/queues", json={"experienceId": experience["id"], "name": "Main"},
                        headers=secret(sk)).json
    assert client.delete(f"/api/v1/experiences/{experience['id']}", headers=secret(sk)).status_code == 204
    admin_revoked, guest2, guest3, guest4 = tenant.guest(), tenant.guest(), tenant.guest(), tenant.guest()
    client.delete(f"/api/v1/sessions/{admin_revoked['session']['sessionId']}", headers=secret(sk))
    client.delete(f"/api/v1/consumers/{guest2['session']['consumerId']}/sessions", headers=secret(sk))
    client.post("/api/v1/auth/logout", headers=bearer(guest3["accessToken"]))
    client.post("/oauth/revoke", data={"token": guest4["accessToken"]}, headers=secret(sk))
    # Security events: a refresh token reused after the grace window, an exchange code replayed.
    reused = tenant.guest()
    tenant.refresh(reused["refreshToken"])
    clock, grace = app.extensions["usher"].clock, app.extensions["usher"].settings.refresh_grace_seconds
    clock.advance(grace + 1)
    try:
        assert tenant.refresh(reused["refreshToken"]).json["error"] == "refresh_token_reused"
    finally:
        clock.advance(-(grace + 1))
    code = client.post("/api/v1/auth/external/authorize", json=SEED_AUTHORIZE, headers=secret(sk)).json["exchangeCode"]
    exchange = {"json": {"exchangeCode": code}, "headers": publishable(tenant.pk)}
    exchanged = client.post("/api/v1/auth/external/exchange", **exchange)
    replay = client.post("/api/v1/auth/external/exchange", **exchange)
    assert replay.status_code == 401

    listed = events(client, sk)
    by_type = {}
    for event in reversed(listed):  # oldest first
        by_type.setdefault(event["type"], []).append(event)
    assert [e["type"] for e in reversed(listed)] == [
        "key.created", "key.rolled", "key.revoked", "settings.updated", "experience.created", "experience.updated",
        "queue.created", "experience.deleted", "session.revoked", "consumer.sessions_revoked", "session.revoked",
        "session.revoked", "refresh_token.reused", "exchange_code.replayed"]
    me = {"type": "key", "id": key_id}
    assert by_type["key.created"][0]["actor"] == me
    assert by_type["key.created"][0]["target"] == {"type": "key", "id": created.json["id"]}
    assert by_type["key.created"][0]["details"]["scopes"] == ["audit:read"]
    assert by_type["key.rolled"][0]["details"]["newKeyId"] == rolled.json["id"]
    assert by_type["key.revoked"][0]["target"]["id"] == rolled.json["id"]
    assert by_type["settings.updated"][0]["details"] == {"changes": {"otpLength": {"old": 6, "new": 8}}}
    assert by_type["settings.updated"][0]["target"] == {"type": "settings", "id": org["organizationId"]}
    assert by_type["experience.updated"][0]["details"]["changes"]["name"] == {"old": "Drop", "new": "Big drop"}
    assert by_type["queue.created"][0]["target"] == {"type": "queue", "id": queue["id"]}
    admin, logout, oauth = by_type["session.revoked"]
    assert admin["target"]["id"] == admin_revoked["session"]["sessionId"] and admin["details"]["reason"] == "admin"
    assert logout["actor"] == {"type": "consumer", "id": guest3["session"]["consumerId"]}
    assert logout["details"]["reason"] == "logout_local"
    assert oauth["actor"] == me and oauth["details"]["reason"] == "oauth_revoke"
    assert oauth["target"]["id"] == guest4["session"]["sessionId"]
    assert by_type["consumer.sessions_revoked"][0]["details"] == {"reason": "admin", "count": 1}
    assert by_type["refresh_token.reused"][0]["actor"] == {"type": "system", "id": None}
    assert by_type["refresh_token.reused"][0]["target"] == {"type": "session", "id": reused["session"]["sessionId"]}
    assert by_type["exchange_code.replayed"][0]["target"] == {"type": "session",
                                                             "id": exchanged.json["session"]["sessionId"]}
    # The chain links every event to the previous one, and anyone can recompute it from the API.
    oldest_first = list(reversed(listed))
    assert oldest_first[0]["prevHash"] is None
    for seq, (previous, event) in enumerate(zip([None, *oldest_first], oldest_first, strict=False), start=1):
        assert event["prevHash"] == (previous["hash"] if previous else None)
        # The hashed body also binds the chain: its organization, its mode and the event's place.
        body = {**{k: v for k, v in event.items() if k != "hash"}, "organizationId": org["organizationId"],
                "mode": "test", "seq": seq}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(((event["prevHash"] or "") + canonical).encode()).hexdigest() == event["hash"]
    assert assert_chain_intact(app, org["organizationId"]) == len(listed)
    # Live mode has a chain of its own that saw none of this.
    assert events(client, org["keys"]["live"]["secretKey"]) == []


def test_no_key_value_token_or_code_is_ever_in_an_event(app, client, tenant, org):
    secrets_seen = [tenant.sk, tenant.pk]
    created = client.post("/api/v1/keys", json={"type": "secret"}, headers=secret(tenant.sk)).json
    rolled = client.post(f"/api/v1/keys/{created['id']}/roll", json={"expiresIn": 0}, headers=secret(tenant.sk)).json
    restricted = client.post("/api/v1/keys", json={"type": "restricted", "scopes": ["introspect"]},
                             headers=secret(tenant.sk)).json
    secrets_seen += [created["key"], rolled["key"], restricted["key"]]
    guest = tenant.guest()
    secrets_seen += [guest["accessToken"], guest["refreshToken"]]
    client.post("/oauth/revoke", data={"token": guest["refreshToken"]}, headers=secret(restricted["key"]))
    code = client.post("/api/v1/auth/external/authorize", json=SEED_AUTHORIZE,
                       headers=secret(tenant.sk)).json["exchangeCode"]
    secrets_seen.append(code)
    for _ in range(2):
        client.post("/api/v1/auth/external/exchange", json={"exchangeCode": code}, headers=publishable(tenant.pk))
    rows = chain_rows(app, org["organizationId"])
    assert {r.type for r in rows} >= {"key.created", "key.rolled", "session.revoked", "exchange_code.replayed"}
    stored = json.dumps([audit.event_view(r) for r in rows])
    for value in secrets_seen:
        assert value not in stored
        assert value[-12:] not in stored  # not even a long fragment
    assert "exc_" not in stored and "eyJ" not in stored


def test_paging_newest_first_with_type_filter_and_cursor(client, tenant):
    for n in range(5):
        client.post("/api/v1/experiences", json={"name": f"E{n}"}, headers=secret(tenant.sk))
    client.patch("/api/v1/settings", json={"otpLength": 9}, headers=secret(tenant.sk))
    first = client.get("/api/v1/audit-events?limit=2&type=experience.created", headers=secret(tenant.sk)).json
    assert [e["details"]["name"] for e in first["data"]] == ["E4", "E3"] and first["hasMore"] is True
    rest = client.get(f"/api/v1/audit-events?limit=10&type=experience.created&startingAfter={first['data'][-1]['id']}",
                      headers=secret(tenant.sk)).json
    assert [e["details"]["name"] for e in rest["data"]] == ["E2", "E1", "E0"] and rest["hasMore"] is False
    assert events(client, tenant.sk)[0]["type"] == "settings.updated"
    assert client.get("/api/v1/audit-events?limit=0", headers=secret(tenant.sk)).status_code == 400
    # A foreign cursor finds nothing rather than another tenant's events.
    assert events(client, tenant.sk, startingAfter="evt_00000000000000000000000000") == []


def test_an_event_rolls_back_with_its_change_and_a_change_with_its_event(app, client, tenant, org, monkeypatch):
    original = audit.record

    def fail_after_recording(*args, **kwargs):
        original(*args, **kwargs)
        raise RuntimeError("crash after the event was written")

    before = len(chain_rows(app, org["organizationId"]))
    monkeypatch.setattr(audit, "record", fail_after_recording)
    assert client.post("/api/v1/experiences", json={"name": "Ghost"}, headers=secret(tenant.sk)).status_code == 500
    assert client.patch("/api/v1/settings", json={"otpLength": 10}, headers=secret(tenant.sk)).status_code == 500
    monkeypatch.setattr(audit, "record", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("log down")))
    assert client.post("/api/v1/keys", json={"type": "publishable"}, headers=secret(tenant.sk)).status_code == 500
    monkeypatch.setattr(audit, "record", original)
    with app.extensions["usher"].db.transaction() as session:
        mine = select(Experience).where(Experience.organization_id == org["organizationId"])
        assert session.scalars(mine).all() == []
    assert client.get("/api/v1/settings", headers=secret(tenant.sk)).json["otpLength"] == 6
    assert len([k for k in client.get("/api/v1/keys", headers=secret(tenant.sk)).json["data"]
                if k["type"] == "publishable"]) == 1
    assert len(chain_rows(app, org["organizationId"])) == before == 0
    # And the chain carries on unbroken.
    assert client.post("/api/v1/experiences", json={"name": "Real"}, headers=secret(tenant.sk)).status_code == 201
    assert assert_chain_intact(app, org["organizationId"]) == 1


def test_audit_verify_passes_then_names_an_edited_and_a_removed_event(app, client, tenant, org, database_url):
    for name in ("One", "Two", "Three"):
        client.post("/api/v1/experiences", json={"name": name}, headers=secret(tenant.sk))
    ok = flask_cli(database_url, "audit", "verify")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    rows = chain_rows(app, org["organizationId"])
    victim = rows[1]
    engine = create_engine(database_url)
    events_table = AuditEvent.__table__
    try:
        with engine.begin() as connection:  # an edit straight in the database
            connection.execute(update(events_table).where(events_table.c.id == victim.id)
                               .values(details={"name": "Tw0"}))
        broken = flask_cli(database_url, "audit", "verify")
        assert broken.returncode == 1
        assert victim.id in broken.stderr and "do not match the hash" in broken.stderr
        assert rows[2].id not in broken.stderr  # the first broken event, not a later one
        with engine.begin() as connection:
            connection.execute(update(events_table).where(events_table.c.id == victim.id)
                               .values(details=victim.details))
        assert flask_cli(database_url, "audit", "verify").returncode == 0
        with engine.begin() as connection:  # a removed event breaks the link of the next one
            connection.execute(delete(events_table).where(events_table.c.id == victim.id))
        removed = flask_cli(database_url, "audit", "verify")
        assert removed.returncode == 1 and rows[2].id in removed.stderr
    finally:
        with engine.begin() as connection:
            if connection.execute(select(events_table.c.id).where(events_table.c.id == victim.id)).first() is None:
                connection.execute(insert(events_table).values(
                    id=victim.id, organization_id=victim.organization_id, mode=victim.mode, seq=victim.seq,
                    type=victim.type, actor_type=victim.actor_type, actor_id=victim.actor_id,
                    target_type=victim.target_type, target_id=victim.target_id, details=victim.details,
                    created_at=victim.created_at, prev_hash=victim.prev_hash, hash=victim.hash))
            connection.execute(update(events_table).where(events_table.c.id == victim.id)
                               .values(details=victim.details))
        engine.dispose()
    assert flask_cli(database_url, "audit", "verify").returncode == 0


def test_removing_the_newest_event_is_caught_by_the_chain_head(app, client, tenant, org, database_url):
    client.post("/api/v1/experiences", json={"name": "Only"}, headers=secret(tenant.sk))
    newest = chain_rows(app, org["organizationId"])[-1]
    engine = create_engine(database_url)
    table = AuditEvent.__table__
    try:
        with engine.begin() as connection:
            connection.execute(delete(table).where(table.c.id == newest.id))
        result = flask_cli(database_url, "audit", "verify")
        assert result.returncode == 1 and org["organizationId"] in result.stderr and "removed" in result.stderr
    finally:
        with engine.begin() as connection:
            connection.execute(insert(table).values(
                id=newest.id, organization_id=newest.organization_id, mode=newest.mode, seq=newest.seq,
                type=newest.type, actor_type=newest.actor_type, actor_id=newest.actor_id,
                target_type=newest.target_type, target_id=newest.target_id, details=newest.details,
                created_at=newest.created_at, prev_hash=newest.prev_hash, hash=newest.hash))
        engine.dispose()
    assert assert_chain_intact(app, org["organizationId"]) == 1


def test_signing_key_rotation_and_retirement_from_the_cli_are_recorded_with_actor_cli(isolated_database_url):
    """On a database of its own: retiring a key changes what every app on the shared one signs with."""
    from app import create_app

    database_url = isolated_database_url
    app = create_app({"TESTING": True, "DATABASE_URL": database_url, "APP_SECRET": APP_SECRET})
    before = 0
    rotated = flask_cli(database_url, "signing-key", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    kids = json.loads(rotated.stdout)
    again = flask_cli(database_url, "signing-key", "rotate", "--now")  # the first new key is now "previous"
    assert again.returncode == 0, again.stderr
    retired = flask_cli(database_url, "signing-key", "retire", kids["access"]["kid"])
    assert retired.returncode == 0, retired.stderr
    refused = flask_cli(database_url, "signing-key", "retire", "sig_unknown")  # changes nothing, records nothing
    assert refused.returncode != 0
    rows = chain_rows(app, "", "")
    assert len(rows) == before + 3
    first, second, third = rows[-3:]
    assert (first.type, first.actor_type, first.actor_id, first.target_type, first.target_id) == \
        ("signing_key.rotated", "cli", None, "signing_key", kids["access"]["kid"])
    assert first.details["refreshKid"] == kids["refresh"]["kid"] and first.details["atOnce"] is False
    assert second.type == "signing_key.rotated" and second.details["atOnce"] is True
    assert (third.type, third.actor_type, third.target_id) == ("signing_key.retired", "cli", kids["access"]["kid"])
    assert assert_chain_intact(app, "", "") == before + 3
    assert flask_cli(database_url, "audit", "verify").returncode == 0
    app.extensions["usher"].db.dispose()


def test_concurrent_changes_on_several_gunicorn_workers_leave_one_unbroken_chain(app, live_server, actions):
    org = actions.create_org()
    sk = org["keys"]["test"]["secretKey"]
    url = live_server.url + "/api/v1"
    experience = http("POST", url + "/experiences", secret(sk), {"name": "Race"}).body

    calls = []
    for n in range(36):
        if n % 3 == 0:
            calls.append(("POST", "/experiences", {"name": f"Race {n}"}))
        elif n % 3 == 1:
            calls.append(("PATCH", f"/experiences/{experience['id']}", {"name": f"Renamed {n}"}))
        else:
            calls.append(("PATCH", "/settings", {"accessTokenTtl": 600 + n}))
    index = iter(range(len(calls)))

    def one():
        method, path, body = calls[next(index)]
        return http(method, url + path, secret(sk), body)

    replies = race(len(calls), one)
    assert all(r.status in (200, 201) for r in replies), [r.body for r in replies if r.status not in (200, 201)]
    rows = chain_rows(app, org["organizationId"])
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert len(rows) == 1 + 12 + 12 + 12  # the first experience, and each change once (settings always change)
    assert len({r.prev_hash for r in rows}) == len(rows)  # no fork: no two events share a predecessor
    assert assert_chain_intact(app, org["organizationId"]) == len(rows)
    with app.extensions["usher"].db.transaction() as session:
        head = session.get(AuditChain, (org["organizationId"], "test"))
        assert (head.seq, head.last_hash) == (rows[-1].seq, rows[-1].hash)


def test_concurrent_first_events_of_a_new_chain_make_one_head(app, live_server, actions):
    """Every writer finds no chain head yet: exactly one is created and the rest queue behind it."""
    org = actions.create_org()
    sk = org["keys"]["live"]["secretKey"]
    replies = race(16, lambda: http("POST", live_server.url + "/api/v1/experiences", secret(sk), {"name": "First"}))
    assert [r.status for r in replies] == [201] * 16, [r.body for r in replies if r.status != 201]
    rows = chain_rows(app, org["organizationId"], "live")
    assert [r.seq for r in rows] == list(range(1, 17)) and rows[0].prev_hash is None
    assert assert_chain_intact(app, org["organizationId"], "live") == 16


@pytest.mark.parametrize("path", ["/api/v1/audit-events"])
def test_the_audit_log_needs_the_audit_scope(client, tenant, path):
    rk = client.post("/api/v1/keys", json={"type": "restricted", "scopes": ["experiences:read"]},
                     headers=secret(tenant.sk)).json["key"]
    response = client.get(path, headers=secret(rk))
    assert response.status_code == 403 and response.json["details"] == {"required": ["audit:read"]}
    assert client.get(path, headers=publishable(tenant.pk)).status_code == 403
