"""What every dashboard page shares: the blueprint and its request hooks (CSRF, the session, the
headers), the navigation, the template filters, and the helpers that turn forms into service
calls and their refusals into messages. The pages are one module each beside this one; each
reads its form, calls the service the admin API calls, and renders the answer: an `ApiError` or
a marshmallow `ValidationError` becomes an inline message with the API's own text."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFError
from markupsafe import Markup, escape
from marshmallow import Schema, ValidationError

from app.api.security import check_scope
from app.errors import CATALOGUE, ApiError
from app.security.callers import RequestContext
from app.security.scopes import has_scope

if TYPE_CHECKING:
    from app.services.dashboard import DashboardSessions
    from app.services.webhook_endpoints import Reveal
    from app.state import Usher

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="templates",
               static_folder="static", static_url_path="/static")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
PUBLIC = {"dashboard.sign_in", "dashboard.static"}
T = TypeVar("T")


@dataclass(frozen=True)
class Page:
    """A navigation entry; `scope` is the one the admin API asks for the same data."""

    endpoint: str
    label: str
    scope: str
    test_only: bool = False


PAGES = (Page("dashboard.keys", "API keys", "keys:write"), Page("dashboard.settings", "Settings", "settings:write"),
         Page("dashboard.consumers", "Consumers", "consumers:read"),
         Page("dashboard.audit_log", "Audit log", "audit:read"),
         Page("dashboard.webhooks", "Webhooks", "webhooks:write"),
         Page("dashboard.outbox", "Test outbox", "consumers:read", test_only=True))


def usher() -> Usher:
    return current_app.extensions["usher"]


def dashboard_sessions() -> DashboardSessions:
    """The store of dashboard sessions (`app.services.dashboard`), built by `init_dashboard`."""
    return current_app.extensions["dashboard"]


def ctx() -> RequestContext:
    """The signed-in key as the admin API would see it (set by `_guard`)."""
    return g.usher_ctx


def visible_pages(caller: RequestContext) -> list[Page]:
    """The pages this key reaches: its scopes allow them (and test mode, for the outbox)."""
    return [p for p in PAGES if has_scope(caller, p.scope) and not (p.test_only and caller.mode != "test")]


def requires_scope(scope: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The view needs `scope`, checked by the admin API's own `check_scope` (403 otherwise)."""
    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            check_scope(ctx(), scope)
            return view(*args, **kwargs)
        return wrapper
    return decorator


# -- every request ----------------------------------------------------------------------------
@bp.before_request
def _guard():
    """CSRF on every POST (400 without the token), then the session: its row, and its key
    through `CallerResolver.resolve_key_id` (revoked or expired: the session ends now)."""
    current_app.extensions["csrf"].protect()
    if request.endpoint in PUBLIC:
        return None
    token = session.get("token")
    key_id = dashboard_sessions().key_of(usher().reader(), token) if token else None
    caller = usher().callers.resolve_key_id(usher().reader, key_id) if key_id else None
    if caller is None:
        if token:
            dashboard_sessions().end(token)
            flash("Your session has ended. Sign in again.", "info")
        session.pop("token", None)
        return redirect(url_for("dashboard.sign_in"), 303)
    session.permanent = True
    g.usher_ctx = caller
    return None


@bp.after_request
def _headers(response):
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "dashboard.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.context_processor
def _nav():
    caller = g.get("usher_ctx")  # `signed_in` in templates: `caller` is Jinja's name for a call block
    return {"signed_in": caller, "pages": visible_pages(caller) if caller else []}


# -- template filters -------------------------------------------------------------------------
@bp.app_template_filter("when")
def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"


@bp.app_template_filter("inline_code")
def _inline_code(text: str) -> Markup:
    """The API's descriptions in HTML: `code` spans become <code>, everything else is escaped."""
    return Markup("").join(Markup("<code>{}</code>").format(part) if index % 2 else escape(part)
                           for index, part in enumerate(str(text).split("`")))


_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


@bp.app_template_filter("duration")
def _duration(seconds) -> str:
    """`2592000` -> "30 days", `5400` -> "1 hour 30 minutes"; "" for what is not a whole number."""
    try:
        left = int(seconds)
    except (TypeError, ValueError):
        return ""
    if left <= 0:
        return ""
    parts = []
    for name, size in _UNITS:
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count} {name}{'s' if count != 1 else ''}")
    return " ".join(parts[:2])


# -- refusals as messages ---------------------------------------------------------------------
@bp.errorhandler(CSRFError)
def _csrf_error(error: CSRFError):
    return render_template("dashboard/error.html", title="Form refused",
                           message="This form was not sent from this dashboard, or it has expired. "
                                   "Reload the page and try again."), 400


def describe(error: ApiError) -> str:
    """The API's message, and the scopes an `insufficient_scope` names."""
    message = error.message or CATALOGUE[error.error].description
    if error.details and error.details.get("required"):
        message += " Needed: " + ", ".join(error.details["required"]) + "."
    return message


@bp.errorhandler(ApiError)
def _api_error(error: ApiError):
    return render_template("dashboard/error.html", title=f"{error.status} {error.error}",
                           message=describe(error)), error.status


def error_messages(error: ValidationError) -> dict:
    """marshmallow's messages by field (data key), as the API's `details` carries them."""
    return error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}


def load(schema: Schema, data: dict) -> tuple[dict | None, dict]:
    """`schema.load(data)` and no errors, or None and marshmallow's messages by field."""
    try:
        return schema.load(data), {}
    except ValidationError as error:
        return None, error_messages(error)


def unless_refused(work: Callable[[], T], *statuses: int) -> T | None:
    """`work()`, or None when it raises an `ApiError` of one of `statuses`: its message is then
    flashed for the page the view redirects to (any other error is the error page)."""
    try:
        return work()
    except ApiError as error:
        if error.status not in statuses:
            raise
        flash(describe(error), "error")
        return None


def unconfirmed(question: str, consequence: str, verb: str, back: str):
    """The confirmation step of an action that cannot be undone: None when the form says
    `confirm=yes`, else the page that asks (200, nothing done). It repeats the POST with the
    same fields and a fresh CSRF token: a plain form, so it needs no script."""
    if request.form.get("confirm") == "yes":
        return None
    fields = {name: value for name, value in request.form.items() if name not in ("csrf_token", "confirm")}
    return render_template("dashboard/confirm.html", title="Are you sure?", question=question,
                           consequence=consequence, verb=verb, action=request.path, fields=fields, back=back)


# -- values shown once ------------------------------------------------------------------------
def holding(kind: str) -> Reveal:
    """A service's `reveal` hook: the new value kept for the next page only, in the transaction
    that made it (see `DashboardSessions.hold_reveal`), so the change commits only with it."""
    token = session["token"]

    def reveal(within, made, value: str) -> None:
        dashboard_sessions().hold_reveal(token, made.id, value, kind, within=within)
    return reveal


def take_reveal(kind: str) -> dict | None:
    """The value held for this page: taken once, whichever page takes it."""
    reveal = dashboard_sessions().take_reveal(session["token"])
    return reveal if reveal is not None and reveal.get("kind", "key") == kind else None
