"""OpenAPI 3.1 and Swagger UI from the app's own files."""

from __future__ import annotations

from openapi_spec_validator import validate

from app.errors import CATALOGUE


def test_openapi_document_is_valid_3_1_and_publishes_the_error_catalogue(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json
    assert spec["openapi"] == "3.1.0"
    validate(spec)
    assert set(spec["components"]["securitySchemes"]) == {"publishableKey", "secretKey", "accessToken", "merchantBasic"}
    assert spec["components"]["securitySchemes"]["publishableKey"]["name"] == "X-Publishable-Key"
    error_schema = spec["components"]["schemas"]["Error"]
    assert set(error_schema["properties"]["error"]["enum"]) == set(CATALOGUE)
    for code in CATALOGUE:  # below Swagger UI's "Authorize", with the schemas
        assert f"`{code}`" in error_schema["description"]
        assert f"`{code}`" not in spec["info"]["description"]


def test_every_operation_declares_the_credential_it_needs(client):
    spec = client.get("/openapi.json").json
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            assert "security" in operation, f"{method.upper()} {path} does not declare its credential"
            assert operation.get("summary"), f"{method.upper()} {path} has no summary"
    assert spec["paths"]["/api/v1/experiences"]["post"]["security"] == [{"secretKey": ["experiences:write"]}]
    assert spec["paths"]["/api/v1/experiences"]["post"]["x-required-scopes"] == ["experiences:write"]
    assert {"publishableKey": []} in spec["paths"]["/api/v1/experiences/{experience_id}"]["get"]["security"]


def test_swagger_ui_is_served_from_local_assets(client):
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/docs/assets/swagger-ui-bundle.js" in html
    assert "http://" not in html and "https://" not in html  # no CDN
    for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        with client.get(f"/docs/assets/{asset}") as response:
            assert response.status_code == 200
            assert len(response.data) > 1000
    assert client.get("/docs/assets/../../app/config.py").status_code == 404


def test_every_operation_is_ready_for_generated_clients(client):
    """Stable camelCase operationIds, a description, the 401/403 a credential can cause, and error
    examples whose codes are ones that status really carries."""
    import re

    spec = client.get("/openapi.json").json
    # Absolute: a document imported elsewhere (Postman, a generator) still knows its host.
    assert spec["servers"] == [{"url": "http://usher.test", "description": "This Usher (its `ISSUER`)."},
                               {"url": "/", "description": "The host this document was fetched from."}]
    ids = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            where = f"{method.upper()} {path}"
            ids.append(operation["operationId"])
            assert re.fullmatch(r"[a-z][a-zA-Z0-9]*", operation["operationId"]), where
            assert operation.get("description"), where
            security = operation["security"]
            if any(security) and path.startswith("/api/"):
                assert "401" in operation["responses"], where
                if all("secretKey" in requirement for requirement in security):
                    assert "403" in operation["responses"], where
            for status, response in operation["responses"].items():
                examples = response.get("content", {}).get("application/json", {}).get("examples", {})
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                if status.startswith(("4", "5")) and schema.get("$ref") != "#/components/schemas/Health":
                    assert examples, f"{where} {status} has no example"
                if schema.get("$ref") == "#/components/schemas/Error":
                    for example in examples.values():
                        assert CATALOGUE[example["value"]["error"]].status == int(status), (where, status, example)
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                assert "415" in operation["responses"], where
    assert len(ids) == len(set(ids))
    assert spec["paths"]["/api/v1/auth/guest"]["post"]["operationId"] == "createGuestSession"
    verify = spec["paths"]["/api/v1/auth/otp/verify"]["post"]
    assert verify["security"] == [{"publishableKey": []}, {"publishableKey": [], "accessToken": []}]
    assert {"otp_invalid", "otp_expired", "authentication_required"} <= set(
        verify["responses"]["401"]["content"]["application/json"]["examples"])
    assert spec["paths"]["/api/v1/auth/logout"]["post"]["requestBody"]["required"] is False
    schemas = spec["components"]["schemas"]
    assert "Schema" not in schemas
    assert schemas["SessionInfo"]["properties"]["expiresAt"]["format"] == "date-time"
    assert schemas["ExperienceOut"]["properties"]["i18n"]["type"] == "null"


def test_operations_are_grouped_by_who_calls_them(client):
    """Swagger UI's sections: the shop (publishable key), the merchant's server and its
    administration (secret key), the standard endpoints, health; no blueprint's own tag."""
    spec = client.get("/openapi.json").json
    assert [tag["name"] for tag in spec["tags"]] == ["Shop", "Merchant server", "Admin", "OAuth and discovery",
                                                     "Health"]
    tag = {(method, path): operation["tags"] for path, operations in spec["paths"].items()
           for method, operation in operations.items() if method != "parameters"}
    assert set(map(tuple, tag.values())) == {("Shop",), ("Merchant server",), ("Admin",), ("OAuth and discovery",),
                                             ("Health",)}
    expected = {("post", "/api/v1/auth/otp/request"): "Shop", ("post", "/api/v1/auth/otp/verify"): "Shop",
                ("post", "/api/v1/auth/guest"): "Shop", ("post", "/api/v1/auth/refresh"): "Shop",
                ("get", "/api/v1/queues/{queue_id}/status"): "Shop",
                ("post", "/api/v1/auth/external/authorize"): "Merchant server",
                ("post", "/api/v1/queues"): "Merchant server", ("get", "/api/v1/consumers"): "Merchant server",
                ("get", "/api/v1/keys"): "Admin", ("patch", "/api/v1/settings"): "Admin",
                ("get", "/api/v1/test/otp-messages"): "Admin", ("post", "/oauth/token"): "OAuth and discovery",
                ("get", "/.well-known/jwks.json"): "OAuth and discovery", ("get", "/readyz"): "Health"}
    assert {key: tag[key][0] for key in expected} == expected


def test_swagger_ui_shows_authorize_before_any_long_text(client):
    """The API description is a few lines; the error catalogue is with the schemas, below."""
    description = client.get("/openapi.json").json["info"]["description"]
    assert len(description.splitlines()) <= 3 and "|---|" not in description


def test_favicon_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/x-icon"
    assert response.data[:4] == b"\x00\x00\x01\x00"  # an icon directory


def test_always_sent_is_written_into_the_document_and_leaves_the_schema_as_declared(client):
    """`always_sent` only records its choice: the fields load as declared, and the document lists
    every field but the optional ones as `required`, nested schemas (registered by apispec's
    resolver) included, in apispec's sorted order."""
    from app.api.admin.audit import Party
    from app.schemas.admin import SettingsOut

    assert not any(field.required for field in SettingsOut().fields.values())
    assert not any(field.required for field in Party().fields.values())
    schemas = client.get("/openapi.json").json["components"]["schemas"]
    settings = schemas["SettingsOut"]
    assert settings["required"] == sorted(set(settings["properties"]) - {"plugins", "botDefenseSecret"})
    assert list(settings)[:3] == ["type", "properties", "required"]
    assert schemas["Party"]["required"] == ["id", "type"]  # only ever nested in AuditEventOut
    assert "required" not in schemas["Settings"]  # the request schema SettingsOut extends


def test_a_views_own_403_is_told_with_the_scope_refusal_whatever_the_decorator_order():
    """`requires` leaves its 403 to the document's plugin, which joins it to the view's own 403
    (`alt_response`), above or below the declaration."""
    from flask import Flask
    from flask.views import MethodView

    from app.api.security import requires
    from app.openapi import EXTRA_403, Api, Blueprint, ErrorSchema, docs_config

    app = Flask(__name__)
    app.config.update(docs_config("1", "http://usher.test"))
    api = Api(app)
    blp = Blueprint("ordered", __name__, url_prefix="/api/v1/ordered")

    @blp.route("/below")
    class Below(MethodView):
        @requires("secret", scope="consumers:read")
        @blp.response(200)
        @blp.alt_response(403, schema=ErrorSchema, description="A live-mode key")
        def get(self):
            return {}

    @blp.route("/above")
    class Above(MethodView):
        @blp.alt_response(403, schema=ErrorSchema, description="A live-mode key")
        @requires("secret", scope="consumers:read")
        @blp.response(200)
        def get(self):
            return {}

    @blp.route("/none")
    class Alone(MethodView):
        @requires("secret")
        @blp.response(200)
        def get(self):
            return {}

    api.register_blueprint(blp)
    paths = api.spec.to_dict()["paths"]
    for name in ("below", "above"):
        operation = paths[f"/api/v1/ordered/{name}"]["get"]
        assert operation["responses"]["403"]["description"] == (
            "A live-mode key; or `insufficient_scope`: a restricted key without `consumers:read`"), name
        assert EXTRA_403 not in operation
    assert paths["/api/v1/ordered/none"]["get"]["responses"]["403"]["description"] == (
        "`insufficient_scope`: a restricted key without every scope (a secret key)")
