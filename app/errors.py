"""The one place an error becomes JSON, and the catalogue of stable error codes.

Every error body is `{"error": code, "message"?: text, "details"?: {...}}`. The codes below are
part of the API contract (published in the OpenAPI document); add, never rename.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, Response, current_app, has_app_context, jsonify
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

log = logging.getLogger("usher.errors")


@dataclass(frozen=True)
class ErrorCode:
    status: int
    message: str | None
    description: str


AUTHENTICATION_REQUIRED = "Authentication required"
SECRET_KEY_REQUIRED = "Secret key required"

CATALOGUE: dict[str, ErrorCode] = {
    "validation_error": ErrorCode(
        400, "The request is not valid.",
        "Malformed input; `details` maps each field to its problems."),
    "invalid_json": ErrorCode(
        400, "The request body is not valid JSON.",
        "The body could not be parsed as JSON."),
    "invalid_email": ErrorCode(
        400, "This email address is not valid.",
        "The email address could not be validated."),
    "invalid_phone": ErrorCode(
        400, "This phone number is not valid.",
        "The phone number could not be parsed or cannot receive SMS."),
    "phone_country_not_allowed": ErrorCode(
        400, "Codes cannot be sent to phone numbers of this country.",
        "The phone number's country is not in the settings' `smsAllowedCountries`."),
    AUTHENTICATION_REQUIRED: ErrorCode(
        401, None,
        "Missing, unknown, expired or revoked key or access token."),
    "otp_invalid": ErrorCode(
        401, "Invalid verification code. Please try again.",
        "Wrong one-time code."),
    "otp_expired": ErrorCode(
        401, "Your verification code has expired. Please request a new one.",
        "The one-time code expired or was used up."),
    "exchange_code_invalid": ErrorCode(
        401, "The exchange code is not valid.",
        "Unknown, used or foreign exchange code."),
    "exchange_code_expired": ErrorCode(
        401, "The exchange code has expired.",
        "The exchange code is older than 60 seconds."),
    "refresh_token_invalid": ErrorCode(
        401, "The refresh token is not valid.",
        "Malformed, foreign or revoked refresh token."),
    "refresh_token_expired": ErrorCode(
        401, "The refresh token has expired.",
        "The refresh token is past its expiry."),
    "refresh_token_reused": ErrorCode(
        401, "This refresh token was already used; the session has been revoked.",
        "An already-rotated refresh token was presented after the grace window."),
    SECRET_KEY_REQUIRED: ErrorCode(
        403, None,
        "A publishable key was used on a secret-key endpoint."),
    "insufficient_scope": ErrorCode(
        403, "This key does not have the scope this needs.",
        "A restricted key without the operation's scope; `details.required` lists it."),
    "forbidden": ErrorCode(
        403, "This credential may not do that.",
        "The credential is valid but not allowed here."),
    "origin_not_allowed": ErrorCode(
        403, "This origin may not call the API with this key.",
        "The browser's `Origin` is not in the mode's `allowedOrigins`; nothing was done."),
    "challenge_required": ErrorCode(
        403, "Solve the challenge and send it again.",
        "The mode's bot defense protects this route and `X-Usher-Challenge` is missing, wrong, expired, "
        "used or another mode's; nothing was done. `details.provider` names the check "
        "(`GET /api/v1/auth/challenge` gives a new challenge)."),
    "identification_required": ErrorCode(
        403, "Sign in to enter this queue.",
        "The queue admits identified consumers only; a guest must sign in first."),
    "not_found": ErrorCode(
        404, "Not found.",
        "Unknown path or id, or an id of another organization or mode."),
    "method_not_allowed": ErrorCode(
        405, "Method not allowed.",
        "The path exists but not with this method (see `Allow`)."),
    "conflict": ErrorCode(
        409, "The request conflicts with the current state.",
        "The resource is not in a state that allows this."),
    "payload_too_large": ErrorCode(
        413, "The request body is too large.",
        "The body exceeds the configured maximum."),
    "unsupported_media_type": ErrorCode(
        415, "Send the body as application/json.",
        "The body is not JSON."),
    "rate_limited": ErrorCode(
        429, "Too many requests. Please try again later.",
        "A rate limit was hit; see `Retry-After`."),
    "internal_error": ErrorCode(
        500, "Something went wrong on our side.",
        "An unexpected error; never carries internals."),
    "service_unavailable": ErrorCode(
        503, "The service is temporarily unavailable. Please retry.",
        "A dependency (database, limit storage, sender) is down; see `Retry-After`."),
}

_BY_STATUS = {400: "validation_error", 401: AUTHENTICATION_REQUIRED, 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
              415: "unsupported_media_type", 429: "rate_limited", 503: "service_unavailable"}


def lookup(code: str) -> ErrorCode | None:
    """A code of the catalogue, or of an installed grant plugin of the current app (`GrantPlugin.errors`)."""
    entry = CATALOGUE.get(code)
    if entry is None and has_app_context():
        registry = current_app.extensions.get("usher_registry")
        entry = registry.error(code) if registry is not None else None
    return entry


class ApiError(Exception):
    """An error the API answers on purpose, with a catalogued code."""

    def __init__(self, error: str, message: str | None = None, *, details: dict | None = None,
                 headers: dict | None = None, status: int | None = None):
        entry = lookup(error)
        if entry is None:
            raise KeyError(error)  # an uncatalogued code is a bug of the caller
        super().__init__(error)
        self.error = error
        self.status = status or entry.status
        self.message = message if message is not None else entry.message
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict:
        body: dict[str, str | dict] = {"error": self.error}
        if self.message is not None:
            body["message"] = self.message
        if self.details:
            body["details"] = self.details
        return body


def error_response(error: ApiError) -> Response:
    response = jsonify(error.body())
    response.status_code = error.status
    for name, value in error.headers.items():
        response.headers[name] = value
    if error.status == 401 and "WWW-Authenticate" not in response.headers:
        response.headers["WWW-Authenticate"] = 'Bearer realm="usher"'
    return response


def _validation_details(messages) -> dict:
    """Flatten webargs' `{location: {field: [msgs]}}` into `{field: [msgs]}`."""
    details: dict = {}
    if isinstance(messages, dict):
        for location, fields in messages.items():
            if isinstance(fields, dict):
                details.update(fields)
            else:
                details[location if location != "json" else "_body"] = fields
    return details


def from_http_exception(exc: HTTPException) -> ApiError:
    data = getattr(exc, "data", None) or {}
    headers = {}
    if exc.code == 405:
        allow = exc.get_response().headers.get("Allow")
        if allow:
            headers["Allow"] = allow
    if exc.code == 400 and "messages" in data:
        return ApiError("validation_error", details=_validation_details(data["messages"]))
    code = _BY_STATUS.get(exc.code or 500)
    if code is None:
        return ApiError("internal_error", status=exc.code) if (exc.code or 500) >= 500 else ApiError(
            "validation_error", exc.description, status=exc.code)
    if exc.code == 400:
        return ApiError("validation_error", "The request is malformed.")
    if exc.code == 429:
        retry = getattr(exc, "retry_after", None)
        if retry:
            headers["Retry-After"] = str(retry)
    return ApiError(code, headers=headers)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return error_response(error)

    @app.errorhandler(HTTPException)
    def _http_exception(exc: HTTPException):
        return error_response(from_http_exception(exc))

    @app.errorhandler(DBAPIError)
    def _database_error(exc: DBAPIError):
        if isinstance(exc, DataError):  # a value the database refuses: the input, not the service
            log.warning("database refused a value: %s", type(exc.orig).__name__)
            return error_response(ApiError("validation_error", "The request contains a value that cannot be stored."))
        if exc.connection_invalidated or _is_unavailable(exc):
            log.warning("database unavailable: %s", type(exc.orig).__name__)
            return error_response(ApiError("service_unavailable", headers={"Retry-After": "1"}))
        log.exception("database error")
        return error_response(ApiError("internal_error"))

    @app.errorhandler(PoolTimeout)
    def _pool_exhausted(_exc: PoolTimeout):
        # Every connection of this process's pool busy past pool_timeout: the database is the
        # bottleneck now, retry later (not a bug of the request).
        log.warning("database pool exhausted")
        return error_response(ApiError("service_unavailable", headers={"Retry-After": "1"}))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(ApiError("internal_error"))


def _is_unavailable(exc: DBAPIError) -> bool:
    """A database that cannot be reached or is busy (retry later), as opposed to a bug."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    if type(exc.orig).__module__.startswith("psycopg"):
        return True  # PostgreSQL's operational errors are connection, shutdown and recovery states
    # SQLite's result code (Python 3.11+), not its message: the primary code is the low byte.
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _SQLITE_UNAVAILABLE


_SQLITE_UNAVAILABLE = {5, 6, 10, 14}  # SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_CANTOPEN
