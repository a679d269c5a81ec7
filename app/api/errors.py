"""The one place an error becomes JSON: Flask's error handlers for `ApiError`, HTTP errors,
database errors and anything unexpected (the catalogue of codes is `app.errors`)."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from app.errors import AUTHENTICATION_REQUIRED, ApiError

log = logging.getLogger("usher.errors")

_BY_STATUS = {400: "validation_error", 401: AUTHENTICATION_REQUIRED, 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
              415: "unsupported_media_type", 429: "rate_limited", 503: "service_unavailable"}


def error_response(error: ApiError):
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
