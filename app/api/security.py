"""The view decorator that declares and enforces a view's credential and scope.

One decorator both resolves the caller (before the view runs), checks the restricted-key scope,
and writes both into the OpenAPI document (the security requirement lists the scope, and the
operation carries `x-required-scopes`), so the contract and the check cannot drift apart.
"""

from __future__ import annotations

from functools import wraps
from typing import Any

from flask import current_app, g, request

from app.cors import check_origin
from app.errors import CATALOGUE, ApiError
from app.openapi import Blueprint
from app.security.callers import RequestContext
from app.security.credentials import CredentialKind, Credentials
from app.security.scopes import SCOPES, has_scope, insufficient_scope, missing

SECURITY_REQUIREMENTS: dict[CredentialKind, list[dict[str, list[str]]]] = {
    CredentialKind.PUBLISHABLE: [{"publishableKey": []}],
    CredentialKind.SECRET: [{"secretKey": []}],
    CredentialKind.ACCESS: [{"publishableKey": [], "accessToken": []}],
    CredentialKind.TOKEN: [{"accessToken": []}],
}


def request_credentials() -> Credentials:
    """The request's credentials, parsed once."""
    credentials = g.get("usher_credentials")
    if credentials is None:
        credentials = g.usher_credentials = Credentials.from_request(request)
    return credentials


def current_context() -> RequestContext:
    return g.usher_ctx


def check_scope(ctx: RequestContext, scope: str | None) -> None:
    """403 `insufficient_scope` unless the caller holds `scope` (a plain function: the
    dashboard and services call it too). No scope means every scope: a secret key only."""
    if scope is None:
        lacking = missing(ctx.scopes, SCOPES)
        if lacking:
            raise insufficient_scope(*lacking)
    elif not has_scope(ctx, scope):
        raise insufficient_scope(scope)


def _settle_after_error(usher, ctx: RequestContext) -> None:
    """After the view (or a check) failed: the 401 of a dead session replaces its error; if the
    session cannot be read either (the database is down), the first error stands."""
    try:
        usher.callers.settle(usher.reader, ctx)
    except ApiError:
        raise
    except Exception:  # noqa: BLE001 - the caller re-raises the view's own error
        return


def requires(*names: str, scope: str | None = None, session_check: str = "before_view"):
    """Decorator: the view needs one of these credentials (`CredentialKind` values), and a
    secret or restricted key needs `scope` (one of `SCOPES`; a secret-key view without one is
    closed to every restricted key, so a forgotten scope fails safe).

    With several kinds, a secret or restricted key in `Authorization` selects "secret", else
    the first other.

    A consumer's session liveness is read before the view runs; with
    `session_check="in_view"`, a read-only (GET) view may read it in its own query instead
    (`RequestContext.pending_session`, one round trip fewer on a polled route). It stays this
    decorator's check: after the view, answer or error, the decorator reads whatever the view
    left unread, so no answer leaves for a dead session, and a view that forgets answers 401
    all the same, only slower.
    """
    kinds = [CredentialKind(name) for name in names]
    others = [kind for kind in kinds if kind is not CredentialKind.SECRET]
    if scope is not None and scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; the scopes are {SCOPES}")
    if session_check not in ("before_view", "in_view"):
        raise ValueError(f"session_check is 'before_view' or 'in_view', not {session_check!r}")
    in_view = session_check == "in_view"

    def choose(credentials: Credentials) -> CredentialKind:
        if len(kinds) > 1 and CredentialKind.SECRET in kinds:
            if credentials.bearer is not None and credentials.bearer.startswith(("sk_", "rk_")):
                return CredentialKind.SECRET
            return others[0]
        return kinds[0]

    def decorator(view):
        if in_view and view.__name__ != "get":
            raise ValueError(f"{view.__qualname__}: only a read-only (GET) view may read the session in its query")

        @wraps(view)
        def wrapper(*args, **kwargs):
            credentials = request_credentials()
            usher = current_app.extensions["usher"]
            kind = choose(credentials)
            g.usher_ctx = ctx = usher.callers.resolve(usher.reader, kind, credentials, defer_session=in_view)
            try:
                check_origin(ctx.organization.allowed_origins, kind)  # the browser's origin, before any work
                if kind is CredentialKind.SECRET:
                    check_scope(ctx, scope)
                response = view(*args, **kwargs)
            except Exception:
                _settle_after_error(usher, ctx)  # a dead session's 401 comes before any other error
                raise
            usher.callers.settle(usher.reader, ctx)  # nothing to do unless the view left the session unread
            return response

        declared = [scope] if scope else list(SCOPES)
        security = [{name: (declared if kind is CredentialKind.SECRET else []) for name in req}
                    for kind in kinds for req in SECURITY_REQUIREMENTS[kind]]
        doc: dict[str, Any] = {"security": security}
        if CredentialKind.SECRET in kinds:
            doc["x-required-scopes"] = declared
            needs = f"`{scope}`" if scope else "every scope (a secret key)"
            own = [r["description"] for r in getattr(view, "_apidoc", {}).get("response", {})
                   .get("responses", {}).get(403, []) if r.get("description")]  # a view's own 403 stays told
            doc["responses"] = {"403": {
                "description": "; or ".join([*own, f"`insufficient_scope`: a restricted key without {needs}"]),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}, "example": {
                    "error": "insufficient_scope", "message": CATALOGUE["insufficient_scope"].message,
                    "details": {"required": declared}}}}}}
        return Blueprint.doc(**doc)(wrapper)

    return decorator
