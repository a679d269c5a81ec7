"""Who is calling: the 401/403 cases with the seed's exact bodies, key storage, rolls, revokes."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.db import utcnow
from app.models import ApiKey
from app.security.keys import keyed_hash
from tests.conftest import APP_SECRET
from tests.helpers import publishable, secret

AUTH_REQUIRED = {"error": "Authentication required"}
SECRET_REQUIRED = {"error": "Secret key required"}


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer sk_test_" + "A" * 32},
    {"Authorization": "Bearer nonsense"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Bearer "},
])
def test_missing_or_unknown_secret_key_is_401_with_the_seed_body(client, headers):
    response = client.get("/api/v1/keys", headers=headers)
    assert response.status_code == 401
    assert response.json == AUTH_REQUIRED
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_publishable_key_on_a_secret_endpoint_is_403_with_the_seed_body(client, org):
    keys = org["keys"]["test"]
    for headers in (publishable(keys["publishableKey"]), secret(keys["publishableKey"])):
        response = client.post("/api/v1/experiences", json={"name": "x"}, headers=headers)
        assert response.status_code == 403
        assert response.json == SECRET_REQUIRED


def test_unknown_publishable_key_on_a_secret_endpoint_is_401(client):
    response = client.get("/api/v1/keys", headers=publishable("pk_test_" + "B" * 32))
    assert response.status_code == 401
    assert response.json == AUTH_REQUIRED


def test_secret_key_in_the_publishable_header_is_refused(client, org, actions):
    keys = org["keys"]["test"]
    experience = actions.create_experience(keys["secretKey"])
    response = client.get(f"/api/v1/experiences/{experience['id']}", headers=publishable(keys["secretKey"]))
    assert response.status_code == 401
    assert response.json == AUTH_REQUIRED


def test_secret_keys_are_stored_only_as_keyed_hashes(app, org):
    session = app.extensions["usher"].db.sessionmaker()
    rows = session.scalars(select(ApiKey).where(ApiKey.organization_id == org["organizationId"])).all()
    session.close()
    assert len(rows) == 4
    stored = {row.lookup for row in rows}
    for mode in ("test", "live"):
        value = org["keys"][mode]["secretKey"]
        assert value not in stored
        assert keyed_hash(APP_SECRET, "api-key", value) in stored
        assert org["keys"][mode]["publishableKey"] in stored  # looked up directly


def test_key_list_never_shows_a_secret_value_and_records_last_use(client, org):
    keys = org["keys"]["test"]
    response = client.get("/api/v1/keys", headers=secret(keys["secretKey"]))
    assert response.status_code == 200
    listed = response.json["data"]
    assert {k["type"] for k in listed} == {"publishable", "secret"}
    assert {k["mode"] for k in listed} == {"test"}
    assert keys["secretKey"] not in response.get_data(as_text=True)
    own = next(k for k in listed if k["type"] == "secret")
    assert own["last4"] == keys["secretKey"][-4:]
    assert own["lastUsedAt"] is not None
    assert set(own) == {"id", "type", "mode", "last4", "createdAt", "expiresAt", "lastUsedAt", "scopes"}


def test_create_key_shows_the_value_once_and_it_works(client, org):
    keys = org["keys"]["live"]
    created = client.post("/api/v1/keys", json={"type": "secret"}, headers=secret(keys["secretKey"]))
    assert created.status_code == 201
    assert created.json["key"].startswith("sk_live_")
    assert created.json["mode"] == "live"
    assert client.get("/api/v1/keys", headers=secret(created.json["key"])).status_code == 200
    listed = client.get(f"/api/v1/keys/{created.json['id']}", headers=secret(keys["secretKey"]))
    assert "key" not in listed.json


def test_rolled_key_works_until_its_expiry_then_is_like_an_unknown_key(app, client, org):
    keys = org["keys"]["test"]
    own = next(k for k in client.get("/api/v1/keys", headers=secret(keys["secretKey"])).json["data"]
               if k["type"] == "secret")
    rolled = client.post(f"/api/v1/keys/{own['id']}/roll", json={"expiresIn": 3600},
                         headers=secret(keys["secretKey"]))
    assert rolled.status_code == 201
    new_value = rolled.json["key"]
    assert new_value != keys["secretKey"] and new_value.startswith("sk_test_")
    # Both work during the overlap.
    assert client.get("/api/v1/keys", headers=secret(keys["secretKey"])).status_code == 200
    assert client.get("/api/v1/keys", headers=secret(new_value)).status_code == 200
    # Move the old key's expiry into the past, as the clock would.
    with app.extensions["usher"].db.transaction() as session:
        session.get(ApiKey, own["id"]).expires_at = utcnow() - timedelta(seconds=1)
    stale = client.get("/api/v1/keys", headers=secret(keys["secretKey"]))
    assert stale.status_code == 401
    assert stale.json == AUTH_REQUIRED
    assert client.get("/api/v1/keys", headers=secret(new_value)).status_code == 200


def test_roll_with_zero_expiry_stops_the_old_value_at_once(client, org):
    keys = org["keys"]["test"]
    own = next(k for k in client.get("/api/v1/keys", headers=secret(keys["secretKey"])).json["data"]
               if k["type"] == "publishable")
    rolled = client.post(f"/api/v1/keys/{own['id']}/roll", json={}, headers=secret(keys["secretKey"]))
    assert rolled.status_code == 201
    assert rolled.json["key"].startswith("pk_test_")
    experience = client.post("/api/v1/experiences", json={"name": "x"}, headers=secret(keys["secretKey"])).json
    assert client.get(f"/api/v1/experiences/{experience['id']}",
                      headers=publishable(keys["publishableKey"])).status_code == 401
    assert client.get(f"/api/v1/experiences/{experience['id']}",
                      headers=publishable(rolled.json["key"])).status_code == 200


def test_revoked_key_fails_and_a_key_cannot_revoke_itself(client, org):
    keys = org["keys"]["test"]
    other = client.post("/api/v1/keys", json={"type": "secret"}, headers=secret(keys["secretKey"])).json
    assert client.delete(f"/api/v1/keys/{other['id']}", headers=secret(keys["secretKey"])).status_code == 204
    assert client.get("/api/v1/keys", headers=secret(other["key"])).json == AUTH_REQUIRED
    own_id = next(k["id"] for k in client.get("/api/v1/keys", headers=secret(keys["secretKey"])).json["data"]
                  if k["type"] == "secret" and k["last4"] == keys["secretKey"][-4:])
    refused = client.delete(f"/api/v1/keys/{own_id}", headers=secret(keys["secretKey"]))
    assert refused.status_code == 409
    assert refused.json["error"] == "conflict"


def test_keys_of_the_other_mode_or_organization_are_not_found(client, org, actions):
    other = actions.create_org("Other")
    theirs = client.get("/api/v1/keys", headers=secret(other["keys"]["test"]["secretKey"])).json["data"][0]
    live = client.get("/api/v1/keys", headers=secret(org["keys"]["live"]["secretKey"])).json["data"][0]
    for key_id in (theirs["id"], live["id"]):
        response = client.post(f"/api/v1/keys/{key_id}/roll", json={}, headers=secret(org["keys"]["test"]["secretKey"]))
        assert response.status_code == 404
        assert response.json["error"] == "not_found"


def test_no_response_or_log_line_contains_a_secret_key_after_creation(client, org, caplog):
    caplog.set_level(logging.DEBUG)
    keys = org["keys"]["test"]
    bodies = []
    for method, path, body in [("get", "/api/v1/keys", None), ("post", "/api/v1/experiences", {"name": "x"}),
                               ("get", "/api/v1/settings", None), ("post", "/api/v1/experiences", {"bad": 1}),
                               ("get", "/api/v1/nowhere", None)]:
        response = getattr(client, method)(path, json=body, headers=secret(keys["secretKey"]))
        bodies.append(response.get_data(as_text=True) + str(dict(response.headers)))
    text = "\n".join(bodies) + caplog.text
    assert keys["secretKey"] not in text
    assert keys["secretKey"][8:] not in text
