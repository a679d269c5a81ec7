"""Refresh rotation (with real concurrency on a real gunicorn), logout scopes, admin sessions."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
from sqlalchemy import select, update

from app.models import AuthSession, Consumer
from app.security.callers import organization_snapshot
from app.services.sessions import (
    read_session,
    refresh_hash,
    rotate,
    save_rotation,
    successor_jtis,
)
from tests.helpers import (
    Statements,
    TenantActions,
    bearer,
    consumer,
    on_postgresql,
    publishable,
    secret,
)
from tests.live import http

AUTH_REQUIRED = {"error": "Authentication required"}


def race(count: int, call):
    """Run `call` from `count` threads released at the same instant."""
    barrier = threading.Barrier(count)

    def go(_):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(go, range(count)))


def test_refresh_rotates_and_each_token_works_once(tenant):
    guest = tenant.guest()
    first = tenant.refresh(guest["refreshToken"])
    assert first.status_code == 200
    assert set(first.json) == {"accessToken", "refreshToken"}
    assert first.json["refreshToken"] != guest["refreshToken"]
    second = tenant.refresh(first.json["refreshToken"])
    assert second.status_code == 200
    claims = jwt.decode(second.json["accessToken"], options={"verify_signature": False})
    assert claims["sessionId"] == guest["session"]["sessionId"]
    assert claims["consumerId"] == guest["session"]["consumerId"]


def test_refresh_tokens_are_stored_only_as_hashes(app, tenant):
    guest = tenant.guest()
    refreshed = tenant.refresh(guest["refreshToken"]).json
    with app.extensions["usher"].db.sessionmaker() as session:
        row = session.get(AuthSession, guest["session"]["sessionId"])
        stored = " ".join(str(getattr(row, c.key)) for c in AuthSession.__table__.columns)
    for token in (guest["refreshToken"], refreshed["refreshToken"]):
        assert token not in stored
        assert jwt.decode(token, options={"verify_signature": False})["jti"] not in stored


def test_malformed_and_expired_refresh_tokens(tenant, app):
    for bad in ("not-a-jwt", "a.b.c"):  # a string, but no token of ours: a failed grant
        response = tenant.refresh(bad)
        assert response.status_code == 401 and response.json["error"] == "refresh_token_invalid"
    empty = tenant.refresh("")  # malformed input
    assert empty.status_code == 400 and empty.json["error"] == "validation_error" and "refreshToken" in empty.json[
        "details"]
    guest = tenant.guest()
    key = app.extensions["usher"].auth.tokens.refresh_keyring.current()
    claims = jwt.decode(guest["refreshToken"], options={"verify_signature": False})
    expired = jwt.encode({**claims, "exp": int(time.time()) - 3600}, key.private, algorithm="EdDSA",
                         headers={"kid": key.kid})
    response = tenant.refresh(expired)
    assert response.status_code == 401
    assert response.json == {"error": "refresh_token_expired", "message": "The refresh token has expired."}


def _live_refresh(server, pk, token):
    return http("POST", server.url + "/api/v1/auth/refresh", publishable(pk), {"refreshToken": token})


@pytest.mark.gunicorn
def test_concurrent_refreshes_get_one_identical_successor_on_gunicorn(live_server, actions):
    keys = actions.create_org()["keys"]["test"]
    pk = keys["publishableKey"]
    guest = http("POST", live_server.url + "/api/v1/auth/guest", publishable(pk)).body
    replies = race(20, lambda: _live_refresh(live_server, pk, guest["refreshToken"]))
    assert [r.status for r in replies] == [200] * 20, [r.body for r in replies if r.status != 200]
    pairs = {(r.body["accessToken"], r.body["refreshToken"]) for r in replies}
    assert len(pairs) == 1
    _access, refresh = pairs.pop()
    # The successor works normally afterwards, and the session is intact.
    onward = _live_refresh(live_server, pk, refresh)
    assert onward.status == 200
    assert jwt.decode(onward.body["accessToken"], options={"verify_signature": False})["sessionId"] == \
        guest["session"]["sessionId"]
    logout = http("POST", live_server.url + "/api/v1/auth/logout", bearer(onward.body["accessToken"]))
    assert logout.status == 204


def test_reuse_after_the_grace_window_revokes_the_session(app, tenant):
    """The app's clock moves past the grace window (no sleeping)."""
    guest = tenant.guest()
    successor = tenant.refresh(guest["refreshToken"]).json
    clock = app.extensions["usher"].clock
    grace = app.extensions["usher"].settings.refresh_grace_seconds
    inside = tenant.refresh(guest["refreshToken"])
    assert inside.status_code == 200 and inside.json == successor  # still inside the window
    clock.advance(grace + 1)
    try:
        reused = tenant.refresh(guest["refreshToken"])
    finally:
        clock.advance(-(grace + 1))
    assert reused.status_code == 401
    assert reused.json["error"] == "refresh_token_reused"
    # The whole session is gone: the successor refresh token and its access token too.
    assert tenant.refresh(successor["refreshToken"]).json["error"] == "refresh_token_invalid"
    assert tenant.client.post("/api/v1/auth/logout", headers=bearer(successor["accessToken"])).status_code == 401
    sessions = tenant.client.get(f"/api/v1/consumers/{guest['session']['consumerId']}/sessions",
                                 headers=secret(tenant.sk)).json["data"]
    assert sessions[0]["revokedReason"] == "refresh_token_reused"


def test_predecessor_inside_the_window_gets_the_same_pair(tenant):
    guest = tenant.guest()
    first = tenant.refresh(guest["refreshToken"]).json
    again = tenant.refresh(guest["refreshToken"])
    assert again.status_code == 200
    assert again.json == first


def test_two_generations_back_is_reuse_even_inside_the_window(tenant):
    guest = tenant.guest()
    first = tenant.refresh(guest["refreshToken"]).json
    tenant.refresh(first["refreshToken"])
    response = tenant.refresh(guest["refreshToken"])
    assert response.status_code == 401
    assert response.json["error"] == "refresh_token_reused"


def _three_sessions(tenant, app):
    """One guest consumer with three sessions (two more started by the service for it)."""
    from app.services.sessions import start_session

    guest = tenant.guest()
    usher = app.extensions["usher"]
    kids = usher.auth.tokens.current_kids()
    sessions = [guest]
    with usher.db.transaction() as tx:
        from app.security.callers import organization_snapshot

        claims = jwt.decode(guest["accessToken"], options={"verify_signature": False})
        organization = organization_snapshot(tx, claims["organizationId"], "test")
        for _ in range(2):
            row, access, refresh = start_session(tx, usher.auth.tokens, kids, usher.auth.app_secret, organization,
                                                 "test", claims["consumerId"], "guest", usher.clock())
            sessions.append({"accessToken": access, "refreshToken": refresh, "session": {"sessionId": row.id}})
    return sessions


def _alive(tenant, queue_id, session) -> bool:
    status = tenant.client.post(f"/api/v1/queues/{queue_id}/enter", headers=consumer(tenant.pk, session["accessToken"]))
    return status.status_code == 200


def _refreshable(tenant, session) -> bool:
    return tenant.refresh(session["refreshToken"]).status_code == 200


def test_logout_local_ends_only_this_session(tenant, app):
    queue = tenant.queue()
    this, other1, other2 = _three_sessions(tenant, app)
    assert tenant.client.post("/api/v1/auth/logout", json={}, headers=bearer(this["accessToken"])).status_code == 204
    assert not _alive(tenant, queue["id"], this) and not _refreshable(tenant, this)
    assert _alive(tenant, queue["id"], other1) and _refreshable(tenant, other2)


def test_logout_others_ends_every_other_session(tenant, app):
    queue = tenant.queue()
    this, other1, other2 = _three_sessions(tenant, app)
    response = tenant.client.post("/api/v1/auth/logout", json={"scope": "others"},
                                  headers=consumer(tenant.pk, this["accessToken"]))
    assert response.status_code == 204
    assert _alive(tenant, queue["id"], this)
    for other in (other1, other2):
        assert not _alive(tenant, queue["id"], other) and not _refreshable(tenant, other)


def test_logout_global_ends_all_sessions_and_both_tokens_die_everywhere(tenant, app):
    queue = tenant.queue()
    sessions = _three_sessions(tenant, app)
    response = tenant.client.post("/api/v1/auth/logout", json={"scope": "global"},
                                  headers=bearer(sessions[1]["accessToken"]))
    assert response.status_code == 204
    for session in sessions:
        assert not _alive(tenant, queue["id"], session)
        assert tenant.status(queue["id"], session["accessToken"]).json == AUTH_REQUIRED
        refused = tenant.refresh(session["refreshToken"])
        assert refused.status_code == 401 and refused.json["error"] == "refresh_token_invalid"
        again = tenant.client.post("/api/v1/auth/logout", headers=bearer(session["accessToken"]))
        assert again.status_code == 401


def test_logout_rejects_an_unknown_scope_and_a_missing_token(tenant):
    guest = tenant.guest()
    bad = tenant.client.post("/api/v1/auth/logout", json={"scope": "everything"}, headers=bearer(guest["accessToken"]))
    assert bad.status_code == 400 and "scope" in bad.json["details"]
    assert tenant.client.post("/api/v1/auth/logout").json == AUTH_REQUIRED
    assert tenant.client.post("/api/v1/auth/logout", headers=publishable(tenant.pk)).json == AUTH_REQUIRED


def test_admin_lists_consumers_and_sessions_and_revokes(tenant, client, actions):
    queue = tenant.queue()
    guest = tenant.guest()
    consumer_id = guest["session"]["consumerId"]
    got = client.get(f"/api/v1/consumers/{consumer_id}", headers=secret(tenant.sk))
    assert got.status_code == 200
    assert got.json == {"id": consumer_id, "email": None, "phone": None, "externalIdentities": [],
                        "mergedInto": None, "createdAt": got.json["createdAt"]}
    listed = client.get("/api/v1/consumers?limit=100", headers=secret(tenant.sk)).json
    assert consumer_id in [c["id"] for c in listed["data"]]
    sessions = client.get(f"/api/v1/consumers/{consumer_id}/sessions", headers=secret(tenant.sk)).json["data"]
    assert [s["id"] for s in sessions] == [guest["session"]["sessionId"]]
    assert sessions[0]["type"] == "guest" and sessions[0]["revokedAt"] is None

    assert client.delete(f"/api/v1/sessions/{sessions[0]['id']}", headers=secret(tenant.sk)).status_code == 204
    assert tenant.status(queue["id"], guest["accessToken"]).json == AUTH_REQUIRED
    assert tenant.refresh(guest["refreshToken"]).json["error"] == "refresh_token_invalid"

    second = tenant.guest()
    other = TenantActions(client, actions.create_org("Other")["keys"]["test"])
    for path in (f"/api/v1/consumers/{consumer_id}", f"/api/v1/consumers/{consumer_id}/sessions"):
        assert client.get(path, headers=secret(other.sk)).status_code == 404
    assert client.delete(f"/api/v1/sessions/{second['session']['sessionId']}",
                         headers=secret(other.sk)).status_code == 404
    assert client.delete(f"/api/v1/consumers/{second['session']['consumerId']}/sessions",
                         headers=secret(tenant.sk)).status_code == 204
    assert tenant.refresh(second["refreshToken"]).json["error"] == "refresh_token_invalid"


def test_guest_sessions_are_limited_per_client_ip(app_config):
    from app import create_app

    app = create_app({**app_config, "GUEST_RATE_LIMIT": "3 per minute"})
    client = app.test_client()
    with app.extensions["usher"].db.transaction() as session:
        from app.services.orgs import create_organization

        secret = app.extensions["usher"].settings.app_secret
        pk = create_organization(session, secret, "Limited")["keys"]["test"]["publishableKey"]
    statuses = [client.post("/api/v1/auth/guest", headers=publishable(pk)).status_code for _ in range(4)]
    assert statuses == [201, 201, 201, 429]
    limited = client.post("/api/v1/auth/guest", headers=publishable(pk))
    assert limited.json["error"] == "rate_limited" and int(limited.headers["Retry-After"]) > 0
    other_ip = client.post("/api/v1/auth/guest", headers=publishable(pk), environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other_ip.status_code == 201
    app.extensions["usher"].db.dispose()


def test_guest_writes_one_consumer_and_one_session(app, tenant):
    guest = tenant.guest()
    with app.extensions["usher"].db.sessionmaker() as session:
        consumers = session.scalars(select(Consumer).where(Consumer.organization_id == tenant.org_id)).all()
        assert [c.id for c in consumers] == [guest["session"]["consumerId"]]
        sessions = session.scalars(select(AuthSession).where(AuthSession.organization_id == tenant.org_id)).all()
        assert [(s.id, s.consumer_id) for s in sessions] == [(guest["session"]["sessionId"],
                                                            guest["session"]["consumerId"])]


# -- PostgreSQL's two-round-trip rotation, and the races it must lose safely ------------------

def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _row(app, session_id: str) -> AuthSession:
    with app.extensions["usher"].db.sessionmaker() as session:
        return session.get(AuthSession, session_id)


def test_a_refresh_is_two_statements_on_postgresql_and_one_locked_transaction_on_sqlite(app, tenant):
    guest = tenant.guest()
    with Statements(app) as run:
        rotated = tenant.refresh(guest["refreshToken"])
    assert rotated.status_code == 200
    touching = [s for s in run.seen if "sessions" in s]
    if run.engine.dialect.name == "postgresql":
        assert run.begins == [] and len(touching) == 2
        assert touching[0].startswith("SELECT") and "FOR UPDATE" not in touching[0]
        assert touching[1].startswith("UPDATE sessions") and "sessions.refresh_hash =" in touching[1]
    else:
        assert run.begins == [1] and touching[0].startswith("SELECT")
    assert tenant.refresh(guest["refreshToken"]).status_code == 200  # the predecessor, inside the window
    assert tenant.refresh(rotated.json["refreshToken"]).status_code == 200


def test_a_rotation_that_loses_a_race_writes_nothing_and_answers_with_the_winners_pair(app, tenant):
    """Another request rotates the same token between this one's read and its write: this one's
    conditional UPDATE matches nothing, and the locked path gives it the winner's generation
    (the grace window's answer), as if it had come second."""
    on_postgresql(app)
    usher = app.extensions["usher"]
    guest = tenant.guest()
    session_id, secret_ = guest["session"]["sessionId"], usher.settings.app_secret

    def win(other):
        row = read_session(other, session_id)
        organization = organization_snapshot(other, tenant.org_id, "test")
        rotate(row, usher.auth.tokens.current_kids(), secret_, organization, _claims(guest["refreshToken"])["jti"],
               usher.clock())
        save_rotation(other, row)

    with Statements(app, win, at="UPDATE sessions SET") as run:
        answered = tenant.refresh(guest["refreshToken"])
    assert run.before is None  # the race happened
    assert answered.status_code == 200
    winner_jti = successor_jtis(secret_, _claims(guest["refreshToken"])["jti"])[1]
    assert _claims(answered.json["refreshToken"])["jti"] == winner_jti
    stored = _row(app, session_id)
    assert stored.refresh_hash == refresh_hash(secret_, winner_jti)  # rotated once, by the winner
    assert any("FOR UPDATE" in s for s in run.seen)


def test_a_session_ended_between_read_and_write_is_not_rotated(app, tenant):
    on_postgresql(app)
    guest = tenant.guest()
    session_id = guest["session"]["sessionId"]
    before = _row(app, session_id).refresh_hash

    def end(other):
        other.execute(update(AuthSession).where(AuthSession.id == session_id)
                      .values(revoked_at=app.extensions["usher"].clock(), revoked_reason="test"))

    with Statements(app, end, at="UPDATE sessions SET") as run:
        refused = tenant.refresh(guest["refreshToken"])
    assert run.before is None
    assert refused.status_code == 401 and refused.json["error"] == "refresh_token_invalid"
    assert _row(app, session_id).refresh_hash == before
