"""flask-smorest, adapted to our contract: 400 on validation, our error envelope, security
schemes, and Swagger UI served from the app's own files."""

from __future__ import annotations

import marshmallow as ma
from flask import Blueprint as FlaskBlueprint
from flask import send_from_directory
from flask_smorest import Api as SmorestApi
from flask_smorest import Blueprint as SmorestBlueprint
from swagger_ui_bundle import swagger_ui_path
from webargs.flaskparser import FlaskParser

from app.errors import CATALOGUE, ApiError

SECURITY_SCHEMES = {
    "publishableKey": {
        "type": "apiKey", "in": "header", "name": "X-Publishable-Key",
        "description": "The organization's publishable key (`pk_test_…` / `pk_live_…`). Safe in browsers.",
    },
    "secretKey": {
        "type": "http", "scheme": "bearer", "bearerFormat": "sk_…",
        "description": "The organization's secret key (`sk_test_…` / `sk_live_…`). Server-side only.",
    },
    "merchantBasic": {
        "type": "http", "scheme": "basic",
        "description": "For /oauth/*: the organization id as user name and a secret key as password.",
    },
    "accessToken": {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "A consumer access token (EdDSA JWT), sent together with the publishable key.",
    },
}

ERROR_CODES_DOC = "\n".join(
    f"| {entry.status} | `{code}` | {entry.description} |" for code, entry in CATALOGUE.items())


class ErrorSchema(ma.Schema):
    """Every error Usher answers."""

    error = ma.fields.String(required=True, metadata={
        "description": "A stable code from the catalogue (see the API description).",
        "enum": list(CATALOGUE)})
    message = ma.fields.String(metadata={"description": "A sentence for people."})
    details = ma.fields.Dict(metadata={"description": "Per-field problems of a `validation_error`."})
    requestId = ma.fields.String(metadata={"description": "The request's `X-Request-Id`, for support."})


class Parser(FlaskParser):
    DEFAULT_VALIDATION_STATUS = 400
    # Every location follows the schema's own `unknown` (RAISE): an unknown query parameter is a
    # validation error too, as the document says (additionalProperties: false).
    DEFAULT_UNKNOWN_BY_LOCATION: dict[str, str | None] = {}  # noqa: RUF012 (webargs declares it per instance)

    def _handle_invalid_json_error(self, error, req, *args, **kwargs):
        """A body that does not parse is its own catalogued error, raised where it is known."""
        raise ApiError("invalid_json")


class Blueprint(SmorestBlueprint):
    ARGUMENTS_PARSER = Parser()


class Api(SmorestApi):
    ERROR_SCHEMA = ErrorSchema

    def _register_error_handlers(self):
        """Errors are ours alone (app.errors); do not let flask-smorest install its handler."""


def docs_config(version: str) -> dict:
    return {
        "API_TITLE": "Usher",
        "API_VERSION": version,
        "OPENAPI_VERSION": "3.1.0",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "docs",
        "OPENAPI_SWAGGER_UI_URL": "/docs/assets/",
        "OPENAPI_SWAGGER_UI_CONFIG": {"persistAuthorization": True, "tryItOutEnabled": True,
                                      "displayRequestDuration": True},
        "API_SPEC_OPTIONS": {
            "info": {
                "description": (
                    "Usher: sessions for shoppers, as a guest, by one-time code or by external "
                    "identity.\n\nEvery error is `{\"error\", \"message\"?, \"details\"?}`; the "
                    "`error` codes are stable:\n\n| status | error | when |\n|---|---|---|\n"
                    + ERROR_CODES_DOC),
            },
            "components": {"securitySchemes": SECURITY_SCHEMES},
        },
    }


def swagger_assets_blueprint() -> FlaskBlueprint:
    """Serve the Swagger UI bundle from the installed wheel: no CDN."""
    bp = FlaskBlueprint("swagger_assets", __name__)

    @bp.get("/docs/assets/<path:filename>")
    def asset(filename: str):
        return send_from_directory(str(swagger_ui_path), filename, max_age=86400)

    return bp
