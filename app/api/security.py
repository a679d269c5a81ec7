"""Who may call a view: declared on the view, enforced by one request step.

`requires(...)` (or `public`) only *declares*: it records a `Requirement` on the view function
and writes it into the OpenAPI document (the security requirement lists the scope, and the
operation carries `x-required-scopes`), so the contract and the check cannot drift apart.
`register_caller_step` installs the one step that enforces it for every view of the app: before
the view it resolves the caller, checks the browser's origin (CORS) and the scope; after the
view it reads a session liveness the view left unread. A view of an API blueprint that declares
nothing is refused, so no view can skip the step by forgetting it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request

from app.api.errors import error_response
from app.cors import check_origin
from app.errors import CATALOGUE, ApiError
from app.openapi import EXTRA_403, Blueprint
from app.security.callers import RequestContext
from app.security.credentials import CredentialKind, Credentials
from app.security.scopes import SCOPES, has_scope, insufficient_scope, missing

log = logging.getLogger(__name__)

SECURITY_REQUIREMENTS: dict[CredentialKind, list[dict[str, list[str]]]] = {
    CredentialKind.PUBLISHABLE: [{"publishableKey": []}],
    CredentialKind.SECRET: [{"secretKey": []}],
    CredentialKind.ACCESS: [{"publishableKey": [], "accessToken": []}],
    CredentialKind.TOKEN: [{"accessToken": []}],
}

#: The blueprints whose every view must declare `requires(...)` or `public`.
DECLARING_BLUEPRINTS = frozenset({"consumer", "auth", "admin", "oauth", "wellknown", "health"})

#: Where a view's declaration is kept (on the view function, copied by `functools.wraps`).
REQUIREMENT_ATTRIBUTE = "usher_requirement"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Requirement:
    """A view's declared caller: one of `kinds` (none: public), `scope` for a secret or
    restricted key, and whether a read-only view reads the session liveness in its own query."""

    kinds: tuple[CredentialKind, ...] = ()
    scope: str | None = None
    in_view: bool = False

    def choose(self, credentials: Credentials) -> CredentialKind:
        """With several kinds, a secret or restricted key in `Authorization` selects "secret",
        else the first other."""
        if len(self.kinds) > 1 and CredentialKind.SECRET in self.kinds:
            if credentials.bearer is not None and credentials.bearer.startswith(("sk_", "rk_")):
                return CredentialKind.SECRET
            return next(kind for kind in self.kinds if kind is not CredentialKind.SECRET)
        return self.kinds[0]


PUBLIC = Requirement()


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


def public(view: F) -> F:
    """Declare a view open to anyone (or authenticating its caller itself, as the OAuth
    endpoints do): the request step lets it through without resolving a caller."""
    setattr(view, REQUIREMENT_ATTRIBUTE, PUBLIC)
    return view


def requires(*names: str, scope: str | None = None, session_check: str = "before_view") -> Callable[[F], F]:
    """Declare that the view needs one of these credentials (`CredentialKind` values), and that
    a secret or restricted key needs `scope` (one of `SCOPES`; a secret-key view without one is
    closed to every restricted key, so a forgotten scope fails safe). The request step
    (`register_caller_step`) enforces it.

    A consumer's session liveness is read before the view runs; with
    `session_check="in_view"`, a read-only (GET) view may read it in its own query instead
    (`RequestContext.pending_session`, one round trip fewer on a polled route). It stays the
    step's check: after the view, answer or error, the step reads whatever the view left
    unread, so no answer leaves for a dead session, and a view that forgets answers 401 all the
    same, only slower.
    """
    kinds = tuple(CredentialKind(name) for name in names)
    if not kinds:
        raise ValueError("requires() names at least one credential; a view open to anyone is @public")
    if scope is not None and scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; the scopes are {SCOPES}")
    if session_check not in ("before_view", "in_view"):
        raise ValueError(f"session_check is 'before_view' or 'in_view', not {session_check!r}")
    requirement = Requirement(kinds, scope, session_check == "in_view")

    def decorator(view: F) -> F:
        if requirement.in_view and view.__name__ != "get":
            raise ValueError(f"{view.__qualname__}: only a read-only (GET) view may read the session in its query")
        documented: F = Blueprint.doc(**_security_doc(requirement))(view)
        setattr(documented, REQUIREMENT_ATTRIBUTE, requirement)
        return documented

    return decorator


def _security_doc(requirement: Requirement) -> dict[str, Any]:
    """The OpenAPI security requirement (and the 403 of a restricted key) of a declaration. The
    403 goes under `EXTRA_403`, which the document's plugin folds into the view's own 403."""
    scope, kinds = requirement.scope, requirement.kinds
    declared = [scope] if scope else list(SCOPES)
    security = [{name: (declared if kind is CredentialKind.SECRET else []) for name in req}
                for kind in kinds for req in SECURITY_REQUIREMENTS[kind]]
    doc: dict[str, Any] = {"security": security}
    if CredentialKind.SECRET in kinds:
        doc["x-required-scopes"] = declared
        needs = f"`{scope}`" if scope else "every scope (a secret key)"
        doc[EXTRA_403] = {
            "description": f"`insufficient_scope`: a restricted key without {needs}",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}, "example": {
                "error": "insufficient_scope", "message": CATALOGUE["insufficient_scope"].message,
                "details": {"required": declared}}}}}
    return doc


def view_requirement(view_func: Callable[..., Any] | None, method: str) -> Requirement | None:
    """The declaration of the view that answers `method` (a `MethodView`'s method, HEAD
    answered by GET as Flask does), or of a plain view function; None if it declares nothing."""
    if view_func is None:
        return None
    view_class = getattr(view_func, "view_class", None)
    if view_class is not None:
        handler = getattr(view_class, method.lower(), None)
        if handler is None and method == "HEAD":
            handler = getattr(view_class, "get", None)
        return getattr(handler, REQUIREMENT_ATTRIBUTE, None)
    return getattr(view_func, REQUIREMENT_ATTRIBUTE, None)


def _resolve_caller() -> None:
    """Before the view: the caller, its origin and its scope, per the view's declaration."""
    rule = request.url_rule
    if rule is None or request.endpoint is None:
        return  # no route (404/405): Flask answers it
    if request.method == "OPTIONS" and getattr(rule, "provide_automatic_options", False):
        return  # Flask's own OPTIONS answer (a preflight carries no key)
    requirement = view_requirement(current_app.view_functions.get(request.endpoint), request.method)
    if requirement is None:
        if request.blueprint in DECLARING_BLUEPRINTS:
            log.error("view %s declares no requirement (requires or public): refused", request.endpoint)
            raise ApiError("internal_error")
        return  # outside the API (dashboard, SDK files): not ours to check
    if not requirement.kinds:
        return  # public
    credentials = request_credentials()
    usher = current_app.extensions["usher"]
    kind = requirement.choose(credentials)
    g.usher_ctx = ctx = usher.callers.resolve(usher.reader, kind, credentials, defer_session=requirement.in_view)
    check_origin(ctx.organization.allowed_origins, kind)  # the browser's origin, before any work
    if kind is CredentialKind.SECRET:
        check_scope(ctx, requirement.scope)


def _settle_session(response: Response) -> Response:
    """After the view (answer or error): a session liveness the view left unread is read now.
    A dead session's 401 replaces any answer; if the session cannot be read either (the
    database is down), an error answer stands and a success gives way to that failure."""
    ctx: RequestContext | None = g.get("usher_ctx")
    if ctx is None or ctx.pending_session is None or ctx.pending_session.checked:
        return response
    usher = current_app.extensions["usher"]
    try:
        usher.callers.settle(usher.reader, ctx)
    except ApiError as error:
        return error_response(error)
    except Exception as exc:  # noqa: BLE001 - the database's failure, answered by its handler
        if response.status_code >= 400:
            return response  # the first error stands
        return current_app.make_response(current_app.handle_user_exception(exc))
    return response


def register_caller_step(app: Flask) -> None:
    """Install the request step that enforces every view's declaration. Registered last in
    `create_app`: it runs after the app's other `before_request` functions (request id, body
    guards) as the view would, and its `after_request` first, so CORS and the request id see the
    final answer."""
    app.before_request(_resolve_caller)
    app.after_request(_settle_session)
