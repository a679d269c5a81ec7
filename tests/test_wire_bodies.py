"""The hot paths answer bodies built in wire form (no marshmallow dump per request, see
`app.api.helpers.json_response`); their `@blp.response` schemas still document them. Each body
here must be exactly what its schema would write: the same keys, in the schema's order, with
the same values, and with jsonify's bytes."""

from __future__ import annotations

import json

from sqlalchemy import event

from app.schemas.auth import SessionTokens, TokenPair
from app.schemas.queues import QueueConsumerState
from tests.helpers import consumer, publishable, secret


def assert_schema_writes(schema, response) -> None:
    body = response.json
    rewritten = schema.dump(schema.load(body))
    assert json.dumps(rewritten) == json.dumps(body), (response.request.path, body, rewritten)
    assert response.get_data() == (json.dumps(body, separators=(",", ":")) + "\n").encode()
    assert response.mimetype == "application/json"


def test_sign_in_bodies_are_what_session_tokens_writes(client, tenant):
    guest = client.post("/api/v1/auth/guest", headers=publishable(tenant.pk))
    assert guest.status_code == 201
    assert list(guest.json["session"]) == ["type", "consumerId", "guestId", "sessionId", "expiresAt"]
    assert_schema_writes(SessionTokens(), guest)

    refreshed = client.post("/api/v1/auth/refresh", headers=publishable(tenant.pk),
                            json={"refreshToken": guest.json["refreshToken"]})
    assert refreshed.status_code == 200
    assert list(refreshed.json) == ["accessToken", "refreshToken"]
    assert_schema_writes(TokenPair(), refreshed)

    client.post("/api/v1/auth/otp/request", headers=publishable(tenant.pk), json={"email": "wire@example.com"})
    messages = client.get("/api/v1/test/otp-messages", headers=secret(tenant.sk)).json["data"]
    code = messages[0]["body"].split("code is ")[1][:6]
    verified = client.post("/api/v1/auth/otp/verify", json={"email": "wire@example.com", "code": code},
                           headers=consumer(tenant.pk, guest.json["accessToken"]))
    assert verified.status_code == 200
    assert verified.json["session"]["guestId"] == guest.json["session"]["guestId"]
    assert_schema_writes(SessionTokens(), verified)

    authorized = client.post("/api/v1/auth/external/authorize", headers=secret(tenant.sk),
                             json={"provider": "shop", "issuer": "https://id.example.com", "subject": "wire"})
    exchanged = client.post("/api/v1/auth/external/exchange", headers=publishable(tenant.pk),
                            json={"exchangeCode": authorized.json["exchangeCode"]})
    assert exchanged.status_code == 200
    assert "guestId" not in exchanged.json["session"]
    assert_schema_writes(SessionTokens(), exchanged)


def test_queue_state_bodies_are_what_queue_consumer_state_writes(client, tenant):
    queue = tenant.queue()
    first = tenant.guest()
    headers = consumer(tenant.pk, first["accessToken"])
    entered = client.post(f"/api/v1/queues/{queue['id']}/enter", headers=headers)
    assert entered.status_code == 200
    assert list(entered.json) == ["queueId", "consumerId", "status", "position", "enteredAt", "admittedAt",
                                  "admissionToken", "denyReason", "pollAfter"]
    assert entered.json["pollAfter"] == 2
    assert_schema_writes(QueueConsumerState(), entered)
    status = client.get(f"/api/v1/queues/{queue['id']}/status", headers=headers)
    assert status.json == entered.json
    assert_schema_writes(QueueConsumerState(), status)
    left = client.post(f"/api/v1/queues/{queue['id']}/leave", headers=headers)
    assert left.status_code == 200
    assert left.json["status"] == "LEFT" and left.json["position"] is None and left.json["pollAfter"] is None
    assert_schema_writes(QueueConsumerState(), left)


def test_a_guest_is_one_statement_on_postgresql_and_one_transaction_on_sqlite(app, tenant):
    """With nobody listening to its events, a guest's two rows cost PostgreSQL one round trip (a
    data-modifying CTE in autocommit); SQLite writes them in one transaction."""
    engine = app.extensions["usher"].db.engine
    tenant.guest()  # the key's first use stamps its last_used_at (a write of its own)
    statements, begins = [], []

    def on_execute(_conn, _cursor, statement, *_args):
        statements.append(statement)

    def on_begin(conn):
        if conn.get_execution_options().get("usher_write"):  # a write transaction (reads autocommit)
            begins.append(1)

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "begin", on_begin)
    try:
        tenant.guest()
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "begin", on_begin)
    writes = [s for s in statements if "INSERT" in s]
    if engine.dialect.name == "postgresql":
        assert len(writes) == 1 and "INSERT INTO consumers" in writes[0] and "INSERT INTO sessions" in writes[0]
        assert begins == []
    else:
        assert [w.split("(")[0].strip() for w in writes] == ["INSERT INTO consumers", "INSERT INTO sessions"]
        assert begins == [1]
