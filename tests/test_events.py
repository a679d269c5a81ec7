"""Typed events: every type has an emitter, and the OpenAPI `webhooks` section documents each
one with the schema that writes its `data`."""

from __future__ import annotations

import ast
import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
from openapi_spec_validator import validate

from app.events import BUILTIN_EVENTS, EVENT_TYPES, SessionRevoked
from app.services.events import event_body

APP = Path(__file__).resolve().parent.parent / "app"


def documented_body_validator(spec: dict, event_type: str) -> jsonschema.Draft202012Validator:
    """A validator of a delivery's JSON body as the document declares it."""
    schema = spec["webhooks"][event_type]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return jsonschema.Draft202012Validator({**schema, "components": spec["components"]})


def test_every_event_type_is_documented_in_the_openapi_webhooks_section(client):
    spec = client.get("/openapi.json").json
    validate(spec)
    assert list(spec["webhooks"]) == list(EVENT_TYPES)
    for event_type in EVENT_TYPES:
        operation = spec["webhooks"][event_type]["post"]
        assert operation["summary"] and operation["tags"] == ["Merchant server"]
        assert {p["name"] for p in operation["parameters"]} == {"webhook-id", "webhook-timestamp",
                                                                 "webhook-signature"}
    body = SessionRevoked(organization_id="org_x", mode="test", session_id="sess_1", consumer_id="cons_1",
                          reason="admin")
    sent = json.loads(event_body(body.type, datetime(2026, 12, 7, tzinfo=UTC), body.data()))
    documented_body_validator(spec, "session.revoked").validate(sent)
    wrong = {**sent, "data": {**sent["data"], "reason": 7}}
    assert list(documented_body_validator(spec, "session.revoked").iter_errors(wrong))
    assert list(documented_body_validator(spec, "session.created").iter_errors(sent)), "type is a const"


def _constructed_names() -> set[str]:
    """Names called anywhere in app/ outside app/events.py (`SessionCreated(...)`)."""
    names: set[str] = set()
    for path in APP.rglob("*.py"):
        if path == APP / "events.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                func = node.func
                names.add(func.id if isinstance(func, ast.Name) else getattr(func, "attr", ""))
    return names


def test_every_event_type_has_an_emitter():
    constructed = _constructed_names()
    missing = [event.__name__ for event in BUILTIN_EVENTS if event.__name__ not in constructed]
    assert not missing, f"event types nothing in app/ makes: {missing}"


def test_an_events_data_is_written_by_its_schema():
    for event in BUILTIN_EVENTS:
        assert set(event.SCHEMA.fields) == {field.name for field in dataclasses.fields(event)} - {
            "organization_id", "mode"}, event
