"""Restricted keys (`rk_…`): exactly their scopes, on every operation family, and no escalation."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.models import ApiKey
from app.security.scopes import SCOPES
from tests.helpers import secret

ALL = sorted(SCOPES)


def make_key(client, creator: str, scopes: list[str] | None = None, key_type: str = "restricted"):
    body = {"type": key_type, **({"scopes": scopes} if scopes is not None else {})}
    return client.post("/api/v1/keys", json=body, headers=secret(creator))


def restricted(client, sk: str, *scopes: str) -> str:
    response = make_key(client, sk, list(scopes))
    assert response.status_code == 201, response.json
    return response.json["key"]


def refused(response, scope: str) -> bool:
    return response.status_code == 403 and response.json == {
        "error": "insufficient_scope", "message": "This key does not have the scope this needs.",
        "details": {"required": [scope]}}


def test_a_restricted_key_is_created_shown_once_listed_with_its_scopes_and_stored_as_a_hash(app, tenant, client):
    created = make_key(client, tenant.sk, ["queues:read", "experiences:read"])
    assert created.status_code == 201
    value = created.json["key"]
    assert re.fullmatch(r"rk_test_[A-Za-z0-9]{32}", value)
    assert created.json["type"] == "restricted" and created.json["scopes"] == ["experiences:read", "queues:read"]
    listed = client.get("/api/v1/keys", headers=secret(tenant.sk))
    by_type = {k["type"]: k for k in listed.json["data"]}
    assert by_type["restricted"]["scopes"] == ["experiences:read", "queues:read"]
    assert by_type["secret"]["scopes"] == ALL and by_type["publishable"]["scopes"] == []
    assert value not in listed.get_data(as_text=True)
    with app.extensions["usher"].db.transaction() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.id == created.json["id"])).one()
        assert row.lookup != value and value not in row.lookup and row.scopes == ["experiences:read", "queues:read"]


@pytest.mark.parametrize("body, problem", [
    ({"type": "restricted"}, "scopes"),
    ({"type": "restricted", "scopes": []}, "scopes"),
    ({"type": "restricted", "scopes": ["everything"]}, "scopes"),
    ({"type": "restricted", "scopes": ["audit:read", "audit:read"]}, "scopes"),
    ({"type": "secret", "scopes": ["audit:read"]}, "scopes"),
])
def test_malformed_scope_lists_are_validation_errors(tenant, client, body, problem):
    response = client.post("/api/v1/keys", json=body, headers=secret(tenant.sk))
    assert response.status_code == 400 and response.json["error"] == "validation_error"
    assert problem in response.json["details"]


def _operations(tenant, client):
    """(scope, a request its holder may make, a request of another family) per scope family."""
    experience = client.post("/api/v1/experiences", json={"name": "Drop"}, headers=secret(tenant.sk)).json
    queue = tenant.queue()
    guest = tenant.guest()
    consumer_id, session_id = guest["session"]["consumerId"], guest["session"]["sessionId"]
    return {
        "experiences:read": lambda h: client.get("/api/v1/experiences", headers=h),
        "experiences:write": lambda h: client.patch(f"/api/v1/experiences/{experience['id']}",
                                                    json={"name": "Renamed"}, headers=h),
        "queues:read": lambda h: client.get(f"/api/v1/queues/{queue['id']}", headers=h),
        "queues:write": lambda h: client.post("/api/v1/queues", json={"experienceId": experience["id"],
                                                                      "name": "Second"}, headers=h),
        "consumers:read": lambda h: client.get(f"/api/v1/consumers/{consumer_id}", headers=h),
        "sessions:write": lambda h: client.delete(f"/api/v1/sessions/{session_id}", headers=h),
        "external:write": lambda h: client.post("/api/v1/auth/external/authorize", json={
            "provider": "shop", "issuer": "https://shop.example", "subject": "u1"}, headers=h),
        "keys:write": lambda h: client.get("/api/v1/keys", headers=h),
        "settings:write": lambda h: client.patch("/api/v1/settings", json={"otpLength": 7}, headers=h),
        "audit:read": lambda h: client.get("/api/v1/audit-events", headers=h),
        "introspect": lambda h: client.post("/oauth/introspect", data={"token": guest["accessToken"]}, headers=h),
    }


OK = {200, 201, 204}


def test_each_scope_allows_its_family_and_nothing_else(tenant, client):
    operations = _operations(tenant, client)
    for scope in operations:
        key = secret(restricted(client, tenant.sk, scope))
        for other, call in operations.items():
            if other == "sessions:write":  # destructive: checked last, below
                continue
            response = call(key)
            if other == scope or (scope.endswith(":write") and other == scope.replace(":write", ":read")):
                assert response.status_code in OK, (scope, other, response.json)
            else:
                assert refused(response, other), (scope, other, response.status_code, response.json)
    # The secret key holds every scope, including the destructive one a restricted key lacks.
    assert refused(operations["sessions:write"](secret(restricted(client, tenant.sk, "consumers:read"))),
                   "sessions:write")
    assert operations["sessions:write"](secret(restricted(client, tenant.sk, "sessions:write"))).status_code == 204


def test_write_includes_read_and_refusals_change_nothing(tenant, client):
    writer = secret(restricted(client, tenant.sk, "experiences:write"))
    created = client.post("/api/v1/experiences", json={"name": "By rk"}, headers=writer)
    assert created.status_code == 201
    assert client.get(f"/api/v1/experiences/{created.json['id']}", headers=writer).status_code == 200
    reader = secret(restricted(client, tenant.sk, "experiences:read"))
    assert refused(client.delete(f"/api/v1/experiences/{created.json['id']}", headers=reader), "experiences:write")
    assert client.get(f"/api/v1/experiences/{created.json['id']}", headers=reader).status_code == 200


def test_no_escalation_when_creating_keys(tenant, client):
    rk = restricted(client, tenant.sk, "keys:write", "experiences:read")
    assert refused(make_key(client, rk, ["experiences:write"]), "experiences:write")
    stronger = make_key(client, rk, ["experiences:read", "audit:read", "keys:write"])
    assert stronger.status_code == 403 and stronger.json["details"] == {"required": ["audit:read"]}
    secret_attempt = make_key(client, rk, key_type="secret")
    assert secret_attempt.status_code == 403
    assert secret_attempt.json["details"]["required"] == sorted(set(ALL) - {"keys:write", "experiences:read"})
    # Within its own scopes it may: the same or fewer scopes, and publishable keys (no scopes).
    assert make_key(client, rk, ["experiences:read"]).status_code == 201
    assert make_key(client, rk, ["keys:write", "experiences:read"]).status_code == 201
    assert make_key(client, rk, key_type="publishable").status_code == 201
    keys = client.get("/api/v1/keys", headers=secret(tenant.sk)).json["data"]
    assert [k["type"] for k in keys].count("secret") == 1  # nothing stronger was made
    assert sum(1 for k in keys if k["type"] == "restricted" and "audit:read" in k["scopes"]) == 0


def test_no_escalation_when_rolling_keys(tenant, client):
    rk = restricted(client, tenant.sk, "keys:write")
    keys = client.get("/api/v1/keys", headers=secret(rk)).json["data"]
    secret_key = next(k for k in keys if k["type"] == "secret")
    rolled = client.post(f"/api/v1/keys/{secret_key['id']}/roll", json={"expiresIn": 0}, headers=secret(rk))
    assert rolled.status_code == 403 and rolled.json["error"] == "insufficient_scope"
    assert "key" not in rolled.json
    # The secret key was not touched: it still works and no successor exists.
    after = client.get("/api/v1/keys", headers=secret(tenant.sk)).json["data"]
    assert next(k for k in after if k["id"] == secret_key["id"])["expiresAt"] is None
    assert [k["type"] for k in after].count("secret") == 1
    wider = restricted(client, tenant.sk, "keys:write", "audit:read")
    wider_id = next(k["id"] for k in client.get("/api/v1/keys", headers=secret(tenant.sk)).json["data"]
                    if k["scopes"] == ["audit:read", "keys:write"])
    refused_roll = client.post(f"/api/v1/keys/{wider_id}/roll", json={"expiresIn": 0}, headers=secret(rk))
    assert refused(refused_roll, "audit:read")
    assert client.get("/api/v1/audit-events", headers=secret(wider)).status_code == 200  # not rolled away
    # Rolling a key within its scopes works, and the successor keeps the scopes.
    own_id = next(k["id"] for k in client.get("/api/v1/keys", headers=secret(tenant.sk)).json["data"]
                  if k["scopes"] == ["keys:write"])
    successor = client.post(f"/api/v1/keys/{own_id}/roll", json={"expiresIn": 0}, headers=secret(rk))
    assert successor.status_code == 201 and successor.json["scopes"] == ["keys:write"]
    assert successor.json["key"].startswith("rk_test_")
    assert client.get("/api/v1/keys", headers=secret(rk)).status_code == 401  # rolled with expiry 0
    assert client.get("/api/v1/keys", headers=secret(successor.json["key"])).status_code == 200


def test_restricted_keys_stay_in_their_mode_and_organization(org, client, actions):
    test_rk = restricted(client, org["keys"]["test"]["secretKey"], "experiences:write")
    live_rk = restricted(client, org["keys"]["live"]["secretKey"], "experiences:write")
    assert live_rk.startswith("rk_live_")
    experience = client.post("/api/v1/experiences", json={"name": "Test only"}, headers=secret(test_rk)).json
    assert client.get(f"/api/v1/experiences/{experience['id']}", headers=secret(live_rk)).status_code == 404
    other = actions.create_org("Other")["keys"]["test"]["secretKey"]
    other_rk = restricted(client, other, "experiences:write")
    assert client.get(f"/api/v1/experiences/{experience['id']}", headers=secret(other_rk)).status_code == 404


def test_revoked_restricted_key_stops_at_once_and_is_not_a_publishable_key(tenant, client):
    created = make_key(client, tenant.sk, ["experiences:read"]).json
    assert client.get("/api/v1/experiences", headers=secret(created["key"])).status_code == 200
    # Sent as a publishable key it is refused (it is a server-side credential).
    assert client.post("/api/v1/auth/guest", headers={"X-Publishable-Key": created["key"]}).status_code == 401
    assert client.delete(f"/api/v1/keys/{created['id']}", headers=secret(tenant.sk)).status_code == 204
    assert client.get("/api/v1/experiences", headers=secret(created["key"])).status_code == 401


def test_introspect_scope_opens_introspection_and_revocation_only(tenant, client, org):
    guest = tenant.guest()
    introspector = restricted(client, tenant.sk, "introspect")
    looked = client.post("/oauth/introspect", data={"token": guest["accessToken"]}, headers=secret(introspector))
    assert looked.status_code == 200 and looked.json["active"] is True
    basic = client.post("/oauth/introspect", data={"token": guest["accessToken"]},
                        auth=(org["organizationId"], introspector))
    assert basic.status_code == 200 and basic.json["active"] is True
    other = restricted(client, tenant.sk, "experiences:read")
    for path in ("/oauth/introspect", "/oauth/revoke"):
        assert refused(client.post(path, data={"token": guest["accessToken"]}, headers=secret(other)), "introspect")
        assert refused(client.post(path, data={"token": guest["accessToken"]}, auth=(org["organizationId"], other)),
                       "introspect")
    assert client.post("/oauth/introspect", data={"token": guest["accessToken"]},
                       headers=secret(tenant.sk)).json["active"] is True  # refused calls revoked nothing
    assert client.post("/oauth/revoke", data={"token": guest["refreshToken"]},
                       headers=secret(introspector)).status_code == 200
    assert client.post("/oauth/introspect", data={"token": guest["accessToken"]},
                       headers=secret(introspector)).json == {"active": False}
    assert client.get("/api/v1/keys", headers=secret(introspector)).status_code == 403


def test_openapi_states_each_operations_scope(client):
    spec = client.get("/openapi.json").json
    expected = {("/api/v1/keys", "post"): "keys:write", ("/api/v1/settings", "patch"): "settings:write",
                ("/api/v1/audit-events", "get"): "audit:read", ("/api/v1/sessions/{session_id}", "delete"):
                "sessions:write", ("/api/v1/auth/external/authorize", "post"): "external:write",
                ("/oauth/introspect", "post"): "introspect", ("/oauth/revoke", "post"): "introspect"}
    for (path, method), scope in expected.items():
        operation = spec["paths"][path][method]
        assert operation["x-required-scopes"] == [scope]
        assert {"secretKey": [scope]} in operation["security"]
        assert "403" in operation["responses"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            if any("secretKey" in requirement for requirement in operation.get("security", [])):
                assert len(operation.get("x-required-scopes", [])) == 1, (method, path)
                assert operation["x-required-scopes"][0] in SCOPES


def test_a_secret_key_view_that_names_no_scope_is_closed_to_every_restricted_key(app_config, isolated_database_url):
    """A forgotten scope fails safe: only a key holding every scope (a secret key) gets in."""
    from app import create_app
    from app.api.security import requires
    from tests.helpers import Actions

    probe_app = create_app({**app_config, "DATABASE_URL": isolated_database_url})

    @probe_app.get("/probe")
    @requires("secret")
    def probe():
        return {"ok": True}

    client = probe_app.test_client()
    sk = Actions(probe_app, client).create_org()["keys"]["test"]["secretKey"]
    rk = restricted(client, sk, *[s for s in SCOPES if s != "webhooks:write"])
    assert client.get("/probe", headers=secret(sk)).json == {"ok": True}
    refused_probe = client.get("/probe", headers=secret(rk))
    assert refused_probe.status_code == 403 and refused_probe.json["details"] == {"required": ["webhooks:write"]}
    probe_app.extensions["usher"].db.dispose()
