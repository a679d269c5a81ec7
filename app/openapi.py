"""flask-smorest, adapted to our contract: 400 on validation, 415 on bodies that are not JSON,
our error envelope, security schemes, Swagger UI served from the app's own files, and one
plugin (`ContractPlugin`) that completes every operation the same way: a stable camelCase
`operationId`, the 401/403/415 a credential or a body can cause, and error examples per status
that show the codes the status really carries here."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import marshmallow as ma
from apispec import APISpec, BasePlugin
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_instance
from flask import Blueprint as FlaskBlueprint
from flask import Flask, Request, send_from_directory
from flask_smorest import Api as SmorestApi
from flask_smorest import Blueprint as SmorestBlueprint
from swagger_ui_bundle import swagger_ui_path
from webargs import missing
from webargs.flaskparser import FlaskParser, is_json_request

from app import inputs
from app.errors import (
    AUTHENTICATION_REQUIRED,
    CATALOGUE,
    SECRET_KEY_REQUIRED,
    ApiError,
    ErrorCode,
    lookup,
)
from app.events import BUILTIN_EVENTS, EVENT_TYPES
from app.schemas.common import always_sent_optional

if TYPE_CHECKING:
    from app.registry import Registry

# The guest upgrade (OTP verify, external exchange): the publishable key, optionally with a
# guest's access token. Put above `requires("publishable")` so that it replaces its requirement.
OPTIONAL_GUEST_TOKEN: list[dict[str, list[str]]] = [{"publishableKey": []}, {"publishableKey": [], "accessToken": []}]

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

def error_codes_doc(catalogue: Mapping[str, ErrorCode]) -> str:
    """The catalogue as the Error schema's description (Markdown table)."""
    return ("Every error is `{\"error\", \"message\"?, \"details\"?, \"requestId\"}`; the `error` codes are "
            "stable:\n\n| status | error | when |\n|---|---|---|\n"
            + "\n".join(f"| {entry.status} | `{code}` | {entry.description} |" for code, entry in catalogue.items()))


class ErrorSchema(ma.Schema):
    """Every error Usher answers."""

    class Meta:
        # The catalogue sits here, with the schemas at the bottom of Swagger UI, not in the API
        # description above "Authorize".
        description = error_codes_doc(CATALOGUE)

    error = ma.fields.String(required=True, metadata={
        "description": "A stable code from the catalogue (see this schema's description).",
        "enum": list(CATALOGUE)})
    message = ma.fields.String(metadata={"description": "A sentence for people."})
    details = ma.fields.Dict(metadata={"description": "Per-field problems of a `validation_error`."})
    requestId = ma.fields.String(metadata={"description": "The request's `X-Request-Id`, for support."})


class Parser(FlaskParser):
    DEFAULT_VALIDATION_STATUS = 400
    # Every location follows the schema's own `unknown` (RAISE): an unknown query parameter is a
    # validation error too, as the document says (additionalProperties: false).
    DEFAULT_UNKNOWN_BY_LOCATION: dict[str, str | None] = {}  # noqa: RUF012 (webargs declares it per instance)

    def load_json(self, req: Request, schema: ma.Schema) -> Any:
        """A body that is not JSON is 415 `unsupported_media_type` (no body at all is no data);
        JSON is parsed with bounds on depth and number length (`app.inputs`), before any schema;
        a body that does not parse is its own catalogued error, raised where it is known. (The
        public loader: webargs' `_raw_load_json` hooks are not part of its API.)"""
        if not is_json_request(req):
            if req.content_length or req.get_data(cache=True):
                raise ApiError("unsupported_media_type")
            return missing
        try:
            return inputs.loads(req.get_data(cache=True).decode())
        except UnicodeDecodeError:
            raise ApiError("invalid_json") from None
        except json.JSONDecodeError as exc:
            if exc.doc == "":  # an empty body is no data, as webargs' own loader has it
                return missing
            raise ApiError("invalid_json") from None


class NoQuery(ma.Schema):
    """For operations without query parameters: any query parameter is a `validation_error`."""

    class Meta:
        unknown = ma.RAISE


# Stable operation ids (the generated SDKs' method names), verb first (list/get/create/update/
# delete/…): never rename one. An operation missing here gets `<method><ViewClass>` (see
# `_operation_id`), which tests/test_sdk_api.py refuses: add it here when it is made.
OPERATION_IDS = {
    ("post", "/api/v1/auth/guest"): "createGuestSession",
    ("post", "/api/v1/auth/refresh"): "refreshTokens",
    ("post", "/api/v1/auth/logout"): "logout",
    ("post", "/api/v1/auth/external/authorize"): "createExchangeCode",
    ("post", "/api/v1/auth/external/exchange"): "exchangeCode",
    ("post", "/api/v1/auth/otp/request"): "requestOtp",
    ("post", "/api/v1/auth/otp/verify"): "verifyOtp",
    ("get", "/api/v1/experiences"): "listExperiences",
    ("post", "/api/v1/experiences"): "createExperience",
    ("get", "/api/v1/experiences/{experience_id}"): "getExperience",
    ("patch", "/api/v1/experiences/{experience_id}"): "updateExperience",
    ("delete", "/api/v1/experiences/{experience_id}"): "deleteExperience",
    ("get", "/api/v1/queues"): "listQueues",
    ("post", "/api/v1/queues"): "createQueue",
    ("get", "/api/v1/queues/{queue_id}"): "getQueue",
    ("post", "/api/v1/queues/{queue_id}/enter"): "enterQueue",
    ("get", "/api/v1/queues/{queue_id}/status"): "getQueueStatus",
    ("post", "/api/v1/queues/{queue_id}/leave"): "leaveQueue",
    ("get", "/api/v1/consumers"): "listConsumers",
    ("get", "/api/v1/consumers/{consumer_id}"): "getConsumer",
    ("get", "/api/v1/consumers/{consumer_id}/sessions"): "listConsumerSessions",
    ("delete", "/api/v1/consumers/{consumer_id}/sessions"): "revokeConsumerSessions",
    ("delete", "/api/v1/sessions/{session_id}"): "revokeSession",
    ("get", "/api/v1/keys"): "listKeys",
    ("post", "/api/v1/keys"): "createKey",
    ("get", "/api/v1/keys/{key_id}"): "getKey",
    ("delete", "/api/v1/keys/{key_id}"): "revokeKey",
    ("post", "/api/v1/keys/{key_id}/roll"): "rollKey",
    ("get", "/api/v1/settings"): "getSettings",
    ("patch", "/api/v1/settings"): "updateSettings",
    ("get", "/api/v1/test/otp-messages"): "listTestOtpMessages",
    ("get", "/api/v1/audit-events"): "listAuditEvents",
    ("get", "/api/v1/webhook-endpoints"): "listWebhookEndpoints",
    ("post", "/api/v1/webhook-endpoints"): "createWebhookEndpoint",
    ("get", "/api/v1/webhook-endpoints/{endpoint_id}"): "getWebhookEndpoint",
    ("delete", "/api/v1/webhook-endpoints/{endpoint_id}"): "deleteWebhookEndpoint",
    ("post", "/api/v1/webhook-endpoints/{endpoint_id}/rotate-secret"): "rotateWebhookSecret",
    ("get", "/api/v1/webhook-endpoints/{endpoint_id}/deliveries"): "listWebhookDeliveries",
    ("get", "/.well-known/jwks.json"): "getJwks",
    ("get", "/.well-known/oauth-authorization-server"): "getAuthorizationServerMetadata",
    ("post", "/oauth/token"): "oauthToken",
    ("post", "/oauth/introspect"): "introspectToken",
    ("post", "/oauth/revoke"): "revokeToken",
    ("get", "/api/v1/auth/challenge"): "getChallenge",
    ("get", "/healthz"): "getLiveness",
    ("get", "/readyz"): "getReadiness",
}

# The code a status carries when an operation names none of its own.
_STATUS_CODES = {400: ["validation_error"], 401: [AUTHENTICATION_REQUIRED], 403: ["forbidden"], 404: ["not_found"],
                 405: ["method_not_allowed"], 409: ["conflict"], 413: ["payload_too_large"],
                 415: ["unsupported_media_type"], 429: ["rate_limited"], 500: ["internal_error"],
                 503: ["service_unavailable"]}
_REFERENCED = {"400": "Validation error, with `details` per field"}  # flask-smorest's BAD_REQUEST, inlined
_CODE_IN_TEXT = re.compile(r"`([^`]+)`")
_ERROR_REF = "#/components/schemas/Error"
#: An operation key where a declaration (`app.api.security.requires`) leaves the 403 it adds: the
#: plugin folds it into the view's own 403 (`alt_response`), whichever decorator is outermost,
#: and takes the key out of the document.
EXTRA_403 = "x-usher-extra-403"


def _operation_id(method: str, path: str, rule) -> str:
    known = OPERATION_IDS.get((method, path))
    if known:
        return known
    # flask-smorest names an endpoint after its MethodView class.
    name = rule.endpoint.rsplit(".", 1)[-1] if rule is not None else re.sub(r"\W+", " ", path).title()
    return method + re.sub(r"\W", "", name)


def _example_name(code: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", code).strip("_").lower()


def _error_content(codes: list[str], schema_ref: str = _ERROR_REF) -> dict:
    examples = {}
    for code in codes:
        value = {"error": code}
        entry = lookup(code)
        if schema_ref == _ERROR_REF and entry is not None and entry.message:
            value["message"] = entry.message
        examples[_example_name(code)] = {"summary": entry.description if entry else code, "value": value}
    return {"application/json": {"schema": {"$ref": schema_ref}, "examples": examples}}


# Swagger UI's sections: operations grouped by who calls them (not by blueprint), in this order.
CALLER_TAGS = [
    {"name": "Shop", "description": "Called from the shop's pages and apps with the publishable key "
                                    "(`X-Publishable-Key`), plus the shopper's access token where a shopper acts."},
    {"name": "Merchant server", "description": "Called by the merchant's own server with a secret key "
                                               "(`Authorization: Bearer sk_…`): shoppers, experiences, queues, "
                                               "external sign-in."},
    {"name": "Admin", "description": "The organization's administration with a secret key: keys, settings, "
                                     "webhooks, the audit log, the test outbox."},
    {"name": "OAuth and discovery", "description": "Standard endpoints for merchant servers and OAuth clients "
                                                   "(form-encoded, RFC error shape), and the documents that "
                                                   "let them verify tokens offline."},
    {"name": "Health", "description": "Health checks for load balancers (no credential)."},
]
_CALLER_NAMES = {tag["name"] for tag in CALLER_TAGS}
_ADMIN_PATHS = ("/api/v1/keys", "/api/v1/settings", "/api/v1/webhook-endpoints", "/api/v1/audit-events",
                "/api/v1/test/")


def caller_tag(path: str, security: list) -> str:
    """Who calls an operation: a shop when a publishable key or a token opens it, else the
    merchant's server or its administration (secret key), the standard endpoints, or health."""
    if path.startswith(("/oauth/", "/.well-known/")):
        return "OAuth and discovery"
    if not path.startswith("/api/"):
        return "Health"
    if path.startswith(_ADMIN_PATHS):
        return "Admin"
    return "Shop" if _browser_callable(security) else "Merchant server"


class ContractPlugin(BasePlugin):
    """Completes each operation from what its decorators declare (see the module docstring)."""

    def init_spec(self, spec: APISpec) -> None:
        self.spec = spec
        for tag in CALLER_TAGS:
            spec.tag(tag)
        # flask-smorest adds one tag per blueprint when registering it; operations are tagged by
        # caller here instead, so those tags are left out of the document (apispec has no public
        # way to drop a tag once added, so this spec's public `tag` is wrapped).
        add_tag = spec.tag

        def caller_tags_only(tag: dict) -> APISpec:
            return spec if tag not in CALLER_TAGS and tag["name"] not in _CALLER_NAMES else add_tag(tag)

        spec.tag = caller_tags_only  # type: ignore[method-assign]

    def schema_helper(self, name: str, definition: dict, **kwargs: Any) -> None:
        """A response schema declared `always_sent` lists every field as `required` but the ones
        it names optional. Runs after MarshmallowPlugin's helper, for every schema registered,
        the nested ones its resolver registers included; `definition` is rewritten in place, so
        `required` keeps its place after `properties` and apispec's sorted order."""
        schema: type[ma.Schema] | ma.Schema | str | None = kwargs.get("schema")
        if schema is None:
            return
        instance = resolve_schema_instance(schema)  # a class, an instance or a class's name
        optional = always_sent_optional(instance)
        if optional is None:
            return
        properties = definition.get("properties", {})
        partial = instance.partial  # as apispec reads it: `True` excuses every field, a list some
        excused = set(instance.fields) if partial is True else set(partial or ())
        required = sorted(observed for field_name, field in instance.fields.items()
                          if field_name not in optional and field_name not in excused
                          and (observed := field.data_key or field_name) in properties)
        entries = [(key, value) for key, value in definition.items() if key != "required"]
        definition.clear()
        for key, value in entries:
            definition[key] = value
            if key == "properties" and required:
                definition["required"] = required

    def operation_helper(self, path: str | None = None, operations: dict | None = None, **kwargs: Any) -> None:
        assert path is not None  # apispec always passes the operation's path
        for method, operation in (operations or {}).items():
            if method == "parameters":
                continue
            operation.setdefault("operationId", _operation_id(method, path, kwargs.get("rule")))
            operation["tags"] = [caller_tag(path, operation.get("security") or [])]
            responses = {str(status): response if isinstance(response, dict) and "$ref" not in response
                         else {"description": _REFERENCED.get(str(status), "Error")}
                         for status, response in operation.get("responses", {}).items()}
            operation["responses"] = responses
            responses.pop("default", None)  # every status is listed with its real codes instead
            extra_403 = operation.pop(EXTRA_403, None)
            if extra_403 is not None:
                own = responses.get("403", {}).get("description")  # a view's own 403 stays told
                told = [own, extra_403["description"]] if own else [extra_403["description"]]
                responses["403"] = {**extra_403, "description": "; or ".join(told)}
            body = operation.get("requestBody")
            if body is not None:
                json_body = body.get("content", {}).get("application/json")
                if json_body is not None:
                    body["required"] = self._has_required(json_body.get("schema"))
                    responses.setdefault("415", {"description": "The body is not JSON"})
                    responses.setdefault("400", {"description": "Validation error, with `details` per field"})
            security = operation.get("security") or []
            if any(requirement for requirement in security):
                responses.setdefault("401", {"description": "Missing, unknown, expired or revoked credential"})
                if path.startswith("/api/") and all("secretKey" in requirement for requirement in security):
                    responses.setdefault("403", {"description": "A publishable key on a secret-key endpoint"})
                if path.startswith("/api/") and _browser_callable(security):
                    responses.setdefault("403", {"description": "`origin_not_allowed`: the browser's `Origin` is "
                                                                "not in the mode's `allowedOrigins`"})
            for status, response in responses.items():
                if isinstance(response, dict) and str(status)[:1] in "45":
                    self._complete_error(int(status), response, operation, body is not None)

    def _has_required(self, schema) -> bool:
        if isinstance(schema, dict) and "$ref" in schema:
            schema = self.spec.components.schemas.get(schema["$ref"].rsplit("/", 1)[-1])
        if isinstance(schema, type | ma.Schema):
            instance = schema() if isinstance(schema, type) else schema
            return any(field.required for field in instance.fields.values())
        return bool(isinstance(schema, dict) and schema.get("required"))

    def _complete_error(self, status: int, response: dict, operation: dict, has_body: bool) -> None:
        content = response.get("content", {}).get("application/json", {})
        ref = content.get("schema", {}).get("$ref", _ERROR_REF) if isinstance(content.get("schema"), dict) \
            else _ERROR_REF
        named = [code for code in _CODE_IN_TEXT.findall(response.get("description", ""))
                 if lookup(code) is not None or ref != _ERROR_REF]
        if ref != _ERROR_REF:  # the RFC 6749 shape of /oauth/*: only the codes it names
            if named:
                response["content"] = _error_content(named, ref)
            return
        codes = ([code for code in named if getattr(lookup(code), "status", None) == status]
                 or list(_STATUS_CODES.get(status, [])))
        security = operation.get("security") or []
        if status == 401 and any(security) and AUTHENTICATION_REQUIRED not in codes:
            codes.append(AUTHENTICATION_REQUIRED)
        if status == 403 and all("secretKey" in requirement for requirement in security) and security:
            codes = [code for code in codes if code != "forbidden"] + [SECRET_KEY_REQUIRED]
            codes += [code for code in ("insufficient_scope",) if code in CATALOGUE]
        if status == 403 and _browser_callable(security):
            codes.append("origin_not_allowed")
        if status == 400 and has_body:
            codes += [code for code in ("validation_error", "invalid_json") if code not in codes]
        codes = list(dict.fromkeys(code for code in codes if lookup(code) is not None))
        if codes:
            response["content"] = _error_content(codes)


def _browser_callable(security: list) -> bool:
    """A consumer operation (publishable key or access token): browsers call it, so its origin
    can be refused (`app.cors`)."""
    return any("publishableKey" in requirement or "accessToken" in requirement for requirement in security)


class Blueprint(SmorestBlueprint):
    ARGUMENTS_PARSER = Parser()

    def no_query(self, view: Callable) -> Callable:
        """Decorator for operations without query parameters: any is a `validation_error` (400)."""
        return self.arguments(NoQuery, location="query", as_kwargs=True)(view)


class Api(SmorestApi):
    ERROR_SCHEMA = ErrorSchema

    def __init__(self, app: Flask | None = None, *, spec_kwargs: dict | None = None, **kwargs: Any) -> None:
        spec_kwargs = dict(spec_kwargs or {})
        spec_kwargs["extra_plugins"] = [*spec_kwargs.get("extra_plugins", ()), ContractPlugin()]
        super().__init__(app, spec_kwargs=spec_kwargs, **kwargs)

    def init_app(self, app: Flask, *, spec_kwargs: dict | None = None) -> None:
        """flask-smorest's own error handler is replaced by `app.errors` (registered after this);
        pages are in the body (`hasMore`), not in its `X-Pagination` header, so the header's
        schema leaves the document (its ETag parts are never referenced, so never written)."""
        super().init_app(app, spec_kwargs=spec_kwargs)
        self.spec.components.schemas.pop("PaginationMetadata", None)


def document_registered(api: Api, registry: Registry) -> None:
    """Write into the document what the registry decides per app, so no enum is a hand list:
    `session.type` (the enabled grants' session types), the webhook event types (Usher's and
    the enabled grants'), the enabled grants' own error codes, and the installed bot checks."""
    schemas = api.spec.components.schemas
    schemas["SessionInfo"]["properties"]["type"]["enum"] = registry.session_types
    for name in ("Settings", "SettingsOut"):
        schemas[name]["properties"]["botDefense"]["enum"] = ["off", *registry.bot_checks]
    schemas["ChallengeOut"]["properties"]["provider"]["enum"] = ["off", *registry.bot_checks]
    schemas["WebhookEndpointIn"]["properties"]["events"]["items"]["enum"] = list(registry.event_types)
    catalogue = {**CATALOGUE, **{code: entry for plugin in registry.enabled for code, entry in plugin.errors.items()}}
    schemas["Error"]["properties"]["error"]["enum"] = list(catalogue)
    schemas["Error"]["description"] = error_codes_doc(catalogue)
    converter = next(plugin for plugin in api.spec.plugins if isinstance(plugin, MarshmallowPlugin)).converter
    assert converter is not None
    for name in ("Settings", "SettingsOut"):
        schemas[name]["properties"]["plugins"].update(type="object", additionalProperties=False, properties={
            name: converter.field2property(field) for name, field in registry.settings_fields.items()})
    document_webhooks(api, [event_type for event_type in registry.event_types if event_type not in EVENT_TYPES])


#: The Standard Webhooks headers every delivery carries (`app.jobs.webhooks`).
_DELIVERY_HEADERS = (
    ("webhook-id", "The event's id (`msg_…`): the same on every attempt, so a receiver can drop repeats."),
    ("webhook-timestamp", "Unix seconds of this attempt; refuse one too far from now (replay)."),
    ("webhook-signature", "`v1,<base64 HMAC-SHA256 of id.timestamp.body>`, one per live endpoint secret."),
)


def document_webhooks(api: Api, plugin_event_types: list[str]) -> None:
    """The OpenAPI 3.1 `webhooks` section, one entry per event type of `app.events` (and one
    per enabled plugin's declared type): the body is written by the same schema that writes the
    event's `data`, so the two cannot differ. Received by the merchant's server, so filed there."""
    entries: list[tuple[str, str, dict]] = []
    for event in BUILTIN_EVENTS:
        data_name = type(event.SCHEMA).__name__
        if data_name not in api.spec.components.schemas:
            api.spec.components.schema(data_name, schema=event.SCHEMA)
        entries.append((event.TYPE, event.SUMMARY, {"$ref": f"#/components/schemas/{data_name}"}))
    entries += [(event_type, "An event a plugin declared; its `data` is the plugin's own.", {"type": "object"})
                for event_type in plugin_event_types]
    webhooks = {}
    for event_type, summary, data in entries:
        body = {"type": "object", "additionalProperties": False, "required": ["type", "timestamp", "data"],
                "properties": {"type": {"type": "string", "const": event_type},
                               "timestamp": {"type": "string", "format": "date-time"}, "data": data}}
        webhooks[event_type] = {"post": {
            "summary": summary, "operationId": "webhook_" + "_".join(re.split(r"[^A-Za-z0-9]+", event_type)),
            "tags": ["Merchant server"], "security": [],  # Usher signs it (`webhook-signature`)
            "parameters": [{"name": name, "in": "header", "required": True, "schema": {"type": "string"},
                            "description": description} for name, description in _DELIVERY_HEADERS],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {"2XX": {"description": "Received. Any other answer (or none within the timeout) is "
                                                 "retried on the endpoint's schedule."}}}}
    api.spec.options["webhooks"] = webhooks


def docs_config(version: str, server_url: str, swagger_ui: bool = True) -> dict:
    config = {
        "API_TITLE": "Usher",
        "API_VERSION": version,
        "OPENAPI_VERSION": "3.1.0",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "docs",
        "OPENAPI_SWAGGER_UI_URL": "/docs/assets/",
        "OPENAPI_SWAGGER_UI_CONFIG": {"tryItOutEnabled": True,  # no persistAuthorization: keys not kept
                                      "displayRequestDuration": True},
        "API_SPEC_OPTIONS": {
            "info": {
                "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},  # LICENSE at the root
                "description": (
                    "Usher: sessions for shoppers, as a guest, by one-time code or by external "
                    "identity.\n\nOperations are grouped by who calls them: the shop (publishable key), "
                    "the merchant's server and its administration (secret key), and the standard "
                    "endpoints. Every error is `{\"error\", \"message\"?, \"details\"?}` with a stable "
                    "`error` code: the catalogue is the **Error** schema's description, at the bottom."),
            },
            # Absolute first (its ISSUER): clients imported elsewhere (Postman, generators) need a
            # host. Then relative: whatever name this document was fetched under (Swagger UI).
            "servers": [{"url": server_url, "description": "This Usher (its `ISSUER`)."},
                        {"url": "/", "description": "The host this document was fetched from."}],
            "components": {"securitySchemes": SECURITY_SCHEMES},
        },
    }
    if not swagger_ui:  # production may switch /docs off (DOCS_ENABLED=false)
        del config["OPENAPI_SWAGGER_UI_PATH"]
    return config


def swagger_assets_blueprint() -> FlaskBlueprint:
    """Serve the Swagger UI bundle from the installed wheel: no CDN."""
    bp = FlaskBlueprint("swagger_assets", __name__)

    @bp.get("/docs/assets/<path:filename>")
    def asset(filename: str):
        return send_from_directory(str(swagger_ui_path), filename, max_age=86400)

    return bp
