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
    for code in CATALOGUE:
        assert f"`{code}`" in spec["info"]["description"]


def test_every_operation_declares_the_credential_it_needs(client):
    spec = client.get("/openapi.json").json
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            assert "security" in operation, f"{method.upper()} {path} does not declare its credential"
            assert operation.get("summary"), f"{method.upper()} {path} has no summary"
    assert spec["paths"]["/api/v1/experiences"]["post"]["security"] == [{"secretKey": []}]
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
