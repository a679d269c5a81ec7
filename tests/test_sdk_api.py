"""The API fixes typed clients need (issue #23): response schemas that say which fields are
always sent, verb-first operationIds for every operation, the test outbox's `code`, and a
refused origin that can read its own 403."""

from __future__ import annotations

import re

import jsonschema
import pytest
from sqlalchemy import select

from app.models import CapturedMessage
from app.openapi import OPERATION_IDS
from app.schemas.admin import ExperienceIn, SettingsSchema
from app.schemas.auth import OtpVerifyIn
from tests.helpers import consumer, publishable, secret

# What a 2xx body may leave out, schema by schema: everything else is in every body, and the
# document says so (`required`), so generated types have no optional field the API always sends.
MAY_BE_ABSENT = {
    "SessionInfo": {"guestId"},  # a session that never was a guest (external sign-in without one)
    "Theme": {"primaryColor", "backgroundColor", "logoUrl"},  # the keys the merchant set
    "TokenResponse": {"issued_token_type"},  # token exchange only
    "Introspection": {"consumerId", "organizationId", "sessionId", "iat", "exp", "iss", "sub", "aud", "jti",
                      "mode", "tokenType", "token_type", "client_id"},  # an inactive token is {"active": false}
    "Health": {"database", "limits", "signingKeys"},  # /healthz says only its status
    "SettingsOut": {"plugins", "botDefenseSecret"},  # plugins: only with plugin settings; the secret: write-only
    "ChallengeOut": {"siteKey", "challenge"},  # the provider's own: a site key (captcha) or a challenge (ALTCHA)
}
VERBS = ("list", "get", "create", "update", "delete", "revoke", "roll", "rotate", "enter", "leave", "refresh",
         "logout", "request", "verify", "exchange", "introspect", "oauth")


def _schemas_of_responses(spec: dict) -> set[str]:
    """Every component schema reachable from a 2xx response body."""
    found: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] not in found:
                name = ref.rsplit("/", 1)[1]
                found.add(name)
                walk(spec["components"]["schemas"][name])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for operations in spec["paths"].values():
        for operation in operations.values():
            if isinstance(operation, dict):
                for status, response in operation.get("responses", {}).items():
                    if status.startswith("2"):
                        walk(response)
    return found


def test_every_response_schema_marks_the_fields_it_always_sends_required(client):
    spec = client.get("/openapi.json").json
    names = _schemas_of_responses(spec)
    assert {"QueueConsumerState", "ExperienceOut", "OutboxMessage", "WebhookEndpointCreated", "KeyCreated",
            "SettingsOut", "ConsumerOut", "SessionOut", "AuditEventOut", "DeliveryOut", "Jwk"} <= names
    for name in sorted(names):
        schema = spec["components"]["schemas"][name]
        optional = set(schema.get("properties", {})) - set(schema.get("required", []))
        assert optional == MAY_BE_ABSENT.get(name, set()), (name, optional)


def test_request_schemas_still_load_as_before():
    """`required` moved only onto response schemas: a settings PATCH is still any subset."""
    assert SettingsSchema().load({"otpTtl": 60}) == {"otp_ttl": 60}
    assert not any(field.required for field in SettingsSchema().fields.values())
    assert ExperienceIn().load({"name": "Drop"}) == {"name": "Drop"}
    assert OtpVerifyIn().load({"email": "a@example.com", "code": "123456"}) == {"email": "a@example.com",
                                                                              "code": "123456"}


def _validator(spec: dict, name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}",
                                            "components": spec["components"]})


def test_real_bodies_carry_every_required_field(client, tenant, actions):
    """The document's `required` is checked against what the API really writes, object by object."""
    spec = client.get("/openapi.json").json
    sk = secret(tenant.sk)
    experience = actions.create_experience(tenant.sk, theme={"primaryColor": "#112233"})
    queue = tenant.queue(experienceId=experience["id"])
    guest = tenant.guest()
    state = client.post(f"/api/v1/queues/{queue['id']}/enter", headers=consumer(tenant.pk, guest["accessToken"]))
    endpoint = client.post("/api/v1/webhook-endpoints", headers=sk,
                           json={"url": "http://127.0.0.1:9/hook", "events": ["session.created"]})
    client.post("/api/v1/auth/otp/request", headers=publishable(tenant.pk), json={"email": "req@example.com"})
    key = client.post("/api/v1/keys", headers=sk, json={"type": "secret"})
    bodies = {
        "QueueConsumerState": [state.json, tenant.status(queue["id"], guest["accessToken"]).json],
        "ExperienceOut": [experience, client.get(f"/api/v1/experiences/{experience['id']}",
                                                 headers=publishable(tenant.pk)).json],
        "QueueOut": [queue, *client.get("/api/v1/queues", headers=sk).json["data"]],
        "WebhookEndpointCreated": [endpoint.json],
        "WebhookEndpointOut": client.get("/api/v1/webhook-endpoints", headers=sk).json["data"],
        "KeyCreated": [key.json],
        "KeyOut": client.get("/api/v1/keys", headers=sk).json["data"],
        "SettingsOut": [client.get("/api/v1/settings", headers=sk).json,
                        client.patch("/api/v1/settings", headers=sk, json={"otpTtl": 120}).json],
        "ConsumerOut": client.get("/api/v1/consumers", headers=sk).json["data"],
        "SessionOut": client.get(f"/api/v1/consumers/{guest['session']['consumerId']}/sessions",
                                 headers=sk).json["data"],
        "OutboxMessage": client.get("/api/v1/test/otp-messages", headers=sk).json["data"],
        "AuditEventOut": client.get("/api/v1/audit-events", headers=sk).json["data"],
        "Jwk": client.get("/.well-known/jwks.json").json["keys"],
    }
    for name, items in bodies.items():
        assert items, name
        validator = _validator(spec, name)
        for item in items:
            errors = [error.message for error in validator.iter_errors(item)]
            assert errors == [], (name, item, errors)
    missing = dict(bodies["QueueConsumerState"][0])
    missing.pop("position")
    assert not _validator(spec, "QueueConsumerState").is_valid(missing)  # the check can fail


def test_every_operation_id_is_from_the_table_and_starts_with_a_verb(client):
    spec = client.get("/openapi.json").json
    ids = {(method, path): operation["operationId"] for path, operations in spec["paths"].items()
           for method, operation in operations.items() if isinstance(operation, dict) and "operationId" in operation}
    assert ids == OPERATION_IDS  # none falls back to `<method><ViewClass>`
    for operation_id in ids.values():
        assert re.fullmatch(r"[a-z]+[A-Z][A-Za-z]*|logout", operation_id), operation_id
        assert operation_id.startswith(VERBS), operation_id
    webhooks = {path_method: ids[path_method] for path_method in ids if "webhook" in path_method[1]}
    assert sorted(webhooks.values()) == ["createWebhookEndpoint", "deleteWebhookEndpoint", "getWebhookEndpoint",
                                         "listWebhookDeliveries", "listWebhookEndpoints", "rotateWebhookSecret"]
    assert ids[("get", "/api/v1/audit-events")] == "listAuditEvents"


def test_the_test_outbox_carries_each_code_and_stores_it_sealed(client, tenant, app):
    for email in ("ann@example.com", "bob@example.com"):
        assert client.post("/api/v1/auth/otp/request", headers=publishable(tenant.pk),
                           json={"email": email}).status_code == 202
    messages = client.get("/api/v1/test/otp-messages", headers=secret(tenant.sk)).json["data"]
    assert [m["to"] for m in messages] == ["bob@example.com", "ann@example.com"]
    for message in messages:
        assert re.fullmatch(r"[0-9]{6}", message["code"]) and f"code is {message['code']}." in message["body"]
        assert list(message) == ["id", "channel", "to", "body", "code", "createdAt"]
    with app.extensions["usher"].db.transaction() as session:
        rows = session.scalars(select(CapturedMessage).where(CapturedMessage.id.in_([m["id"] for m in messages])))
        for row in rows:
            code = next(m["code"] for m in messages if m["id"] == row.id)
            assert code.encode() not in row.body_sealed and b"verification" not in row.body_sealed
    verified = client.post("/api/v1/auth/otp/verify", headers=publishable(tenant.pk),
                           json={"email": "ann@example.com", "code": messages[1]["code"]})
    assert verified.status_code == 200 and verified.json["session"]["type"] == "otp"


def test_a_message_captured_before_codes_were_kept_reads_with_no_code(client, tenant, app):
    assert client.post("/api/v1/auth/otp/request", headers=publishable(tenant.pk),
                       json={"email": "old@example.com"}).status_code == 202
    usher = app.extensions["usher"]
    capture = usher.senders.capture
    with usher.db.transaction() as session:
        row = session.scalars(select(CapturedMessage).where(CapturedMessage.recipient == "old@example.com")).one()
        body, _code = capture.read(row)
        row.body_sealed = capture.sealer.seal(body.encode(), row.id)  # the old format: the body alone
    message = client.get("/api/v1/test/otp-messages", headers=secret(tenant.sk)).json["data"][0]
    assert message["to"] == "old@example.com" and message["code"] is None and message["body"] == body


@pytest.mark.parametrize("path", ["/api/v1/auth/guest", "/api/v1/auth/otp/request"])
def test_a_refused_origin_can_read_its_403(client, tenant, path):
    client.patch("/api/v1/settings", headers=secret(tenant.sk), json={"allowedOrigins": ["https://shop.example"]})
    evil = "https://evil.example"
    refused = client.post(path, headers={**publishable(tenant.pk), "Origin": evil}, json={"email": "a@example.com"}
                          if "otp" in path else None)
    assert refused.status_code == 403 and refused.json["error"] == "origin_not_allowed"
    assert refused.headers["Access-Control-Allow-Origin"] == evil
    assert "Origin" in refused.headers["Vary"]
    assert "X-Request-Id" in refused.headers["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Credentials" not in refused.headers
    # A bad key from that origin is not a refusal of the origin: still unreadable.
    unknown = client.post("/api/v1/auth/guest", headers={**publishable("pk_test_" + "x" * 40), "Origin": evil})
    assert unknown.status_code == 401 and "Access-Control-Allow-Origin" not in unknown.headers
