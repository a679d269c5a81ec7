"""Bad input of every kind answers a catalogued JSON error: never HTML, never a stack trace."""

from __future__ import annotations

import pytest

from app.errors import CATALOGUE
from tests.helpers import secret


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.json
    assert body["error"] == code
    assert code in CATALOGUE
    assert set(body) <= {"error", "message", "details"}
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "<html" not in text.lower() and "SELECT" not in text
    return body


def test_malformed_json(client, org):
    response = client.post("/api/v1/experiences", data="{not json", content_type="application/json",
                           headers=secret(org["keys"]["test"]["secretKey"]))
    assert_error(response, 400, "invalid_json")


def test_wrong_types_and_unknown_fields_list_details_per_field(client, org):
    response = client.post("/api/v1/experiences", json={"name": 42, "openAt": "tomorrow", "colour": "red"},
                           headers=secret(org["keys"]["test"]["secretKey"]))
    body = assert_error(response, 400, "validation_error")
    assert set(body["details"]) == {"name", "openAt", "colour"}
    assert body["details"]["colour"] == ["Unknown field."]


def test_missing_required_field_and_a_body_that_is_not_an_object(client, org):
    headers = secret(org["keys"]["test"]["secretKey"])
    body = assert_error(client.post("/api/v1/experiences", json={}, headers=headers), 400, "validation_error")
    assert body["details"] == {"name": ["Missing data for required field."]}
    assert_error(client.post("/api/v1/experiences", json=[1, 2], headers=headers), 400, "validation_error")


@pytest.mark.parametrize("body, field", [
    ({"name": ""}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"name": "x", "timeZone": "Mars/Olympus"}, "timeZone"),
    ({"name": "x", "openAt": "2024-12-01T09:00:00"}, "openAt"),  # no offset: ambiguous instant
    ({"name": "x", "openAt": "2024-12-02T00:00:00Z", "closeAt": "2024-12-01T00:00:00Z"}, "closeAt"),
    ({"name": "x", "theme": {"primaryColor": "red"}}, "theme"),
])
def test_out_of_range_values(client, org, body, field):
    response = client.post("/api/v1/experiences", json=body, headers=secret(org["keys"]["test"]["secretKey"]))
    assert field in assert_error(response, 400, "validation_error")["details"]


def test_bad_query_parameters(client, org):
    response = client.get("/api/v1/experiences?limit=0", headers=secret(org["keys"]["test"]["secretKey"]))
    assert "limit" in assert_error(response, 400, "validation_error")["details"]
    response = client.get("/api/v1/experiences?limit=abc", headers=secret(org["keys"]["test"]["secretKey"]))
    assert "limit" in assert_error(response, 400, "validation_error")["details"]


def test_oversized_body_is_413(client, org, app):
    limit = app.config["MAX_CONTENT_LENGTH"]
    response = client.post("/api/v1/experiences", data=b'{"name": "' + b"x" * limit + b'"}',
                           content_type="application/json", headers=secret(org["keys"]["test"]["secretKey"]))
    assert_error(response, 413, "payload_too_large")


def test_unknown_route_is_404_json(client):
    assert_error(client.get("/api/v1/nothing-here"), 404, "not_found")
    assert_error(client.get("/robots.txt"), 404, "not_found")  # (/favicon.ico is served: an icon)


def test_unknown_id_is_404_json(client, org):
    response = client.get("/api/v1/experiences/exp_01HXYZ123456789ABCDEFGHJKM",
                          headers=secret(org["keys"]["test"]["secretKey"]))
    assert_error(response, 404, "not_found")


def test_wrong_method_is_405_with_allow(client):
    response = client.put("/api/v1/experiences")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


@pytest.fixture
def fresh_app(app_config):
    """An app of its own, for tests that add a route before its first request."""
    from app import create_app

    app = create_app(app_config)
    yield app
    app.extensions["usher"].db.dispose()


def test_rate_limit_answers_429_from_the_catalogue(fresh_app):
    app, client = fresh_app, fresh_app.test_client()

    @app.get("/test-only/limited")
    def limited():
        app.extensions["usher"].limits.hit("test", "1 per minute", "org", "test", "key")
        return {"ok": True}

    assert client.get("/test-only/limited").status_code == 200
    response = client.get("/test-only/limited")
    assert_error(response, 429, "rate_limited")
    assert int(response.headers["Retry-After"]) > 0


def test_unexpected_exception_is_500_without_internals(fresh_app, caplog):
    app, client = fresh_app, fresh_app.test_client()

    @app.get("/test-only/boom")
    def boom():
        raise RuntimeError("secret internal detail SELECT * FROM api_keys")

    response = client.get("/test-only/boom")
    body = assert_error(response, 500, "internal_error")
    assert "secret internal detail" not in str(body)
    assert "RuntimeError" in caplog.text  # logged for operators, not returned


@pytest.mark.parametrize("url", ["postgresql+psycopg://127.0.0.1:9/test", "sqlite:////nonexistent-dir/x.sqlite3"])
def test_database_down_is_503_service_unavailable(app_config, url):
    from app import create_app

    broken = create_app({**app_config, "DATABASE_URL": url})
    response = broken.test_client().get("/api/v1/keys", headers=secret("sk_test_" + "A" * 32))
    body = assert_error(response, 503, "service_unavailable")
    assert body["message"]
    assert response.headers["Retry-After"]
    broken.extensions["usher"].db.dispose()


def test_nul_characters_are_refused_everywhere_never_a_500(client, org):
    """PostgreSQL cannot store NUL in text; found by the fuzzer on the PostgreSQL run."""
    headers = secret(org["keys"]["test"]["secretKey"])
    body = assert_error(client.post("/api/v1/experiences", json={"name": "a\x00b"}, headers=headers),
                        400, "validation_error")
    assert body["details"] == {"name": ["Must not contain NUL characters."]}
    body = assert_error(client.get("/api/v1/consumers?email=%00x&phone=1", headers=headers), 400, "validation_error")
    assert "email" in body["details"]
    assert_error(client.get("/api/v1/experiences/exp_%00", headers=headers), 404, "not_found")
    assert_error(client.delete("/api/v1/sessions/%00", headers=headers), 404, "not_found")
    body = assert_error(client.post("/api/v1/auth/external/authorize", headers=headers,
                                    json={"provider": "p", "issuer": "https://x.example", "subject": "s",
                                          "claims": {"k\x00": "v", "name": "x\x00"}}), 400, "validation_error")
    assert set(body["details"]) == {"k\x00", "claims"}
