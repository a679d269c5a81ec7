"""The dashboard's pages. Each view reads the form, calls the service the admin API calls, and
renders the answer; an `ApiError` or a marshmallow `ValidationError` becomes an inline message
with the API's own text."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import wraps
from typing import Any, TypeVar

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
from marshmallow import ValidationError, fields

from app.api.admin.audit import AuditEventArgs
from app.api.helpers import (
    ID_SHAPE,
    app_secret,
    db_session,
    now,
    tenant_get,
    transaction,
)
from app.api.security import check_scope
from app.errors import AUTHENTICATION_REQUIRED, CATALOGUE, SECRET_KEY_REQUIRED, ApiError
from app.models import ApiKey, AuthSession, Consumer, WebhookEndpoint
from app.ratelimit import client_key
from app.registry import stored_plugin_settings
from app.schemas.admin import KeyCreate, KeyRoll, SettingsSchema
from app.schemas.auth import OutboxArgs
from app.schemas.common import PageArgs
from app.schemas.consumers import ConsumerListArgs
from app.schemas.webhooks import DeliveryArgs, SecretRotation, WebhookEndpointIn
from app.security.callers import RequestContext
from app.security.keys import parse_key
from app.security.scopes import SCOPES, has_scope, key_scopes
from app.services import audit
from app.services.consumers import (
    consumer_query,
    consumer_sessions,
    consumer_views,
    end_consumer_sessions,
    end_session,
)
from app.services.events import events_of
from app.services.orgs import (
    create_key_for,
    live_keys_query,
    revoke_key_for,
    roll_key_for,
    update_settings,
)
from app.services.outbox import outbox_messages
from app.services.paging import page
from app.services.webhook_endpoints import (
    create_endpoint_for,
    delete_endpoint_for,
    endpoint_deliveries,
    endpoints_query,
    rotate_secret_for,
)

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="templates",
               static_folder="static", static_url_path="/static")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
PUBLIC = {"dashboard.sign_in", "dashboard.static"}
T = TypeVar("T")
SIGN_IN_TYPES = ("secret", "restricted")  # key types that may sign in
# Failed sign-ins per client address (`DASHBOARD_SIGN_IN_RATE_LIMIT`), counted before any tenant is
# known, hence a tenant and mode of their own in the limit's key.
SIGN_IN_FAILURES = ("dashboard_sign_in_failures", "-", "dashboard")


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


def _usher():
    return current_app.extensions["usher"]


def _sessions():
    return current_app.extensions["dashboard"]


def ctx() -> RequestContext:
    return g.usher_ctx


def visible_pages(caller: RequestContext) -> list[Page]:
    """The pages this key reaches: its scopes allow them (and test mode, for the outbox)."""
    return [p for p in PAGES if has_scope(caller, p.scope) and not (p.test_only and caller.mode != "test")]


def requires_scope(scope: str):
    """The view needs `scope`, checked by the admin API's own `check_scope` (403 otherwise)."""
    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
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
    key_id = _sessions().key_of(_usher().reader(), token) if token else None
    caller = _usher().callers.resolve_key_id(_usher().reader, key_id) if key_id else None
    if caller is None:
        if token:
            _sessions().end(token)
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


@bp.app_template_filter("when")
def _when(value: datetime | None) -> str:
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


@bp.context_processor
def _nav():
    caller = g.get("usher_ctx")  # `signed_in` in templates: `caller` is Jinja's name for a call block
    return {"signed_in": caller, "pages": visible_pages(caller) if caller else []}


@bp.errorhandler(CSRFError)
def _csrf_error(error: CSRFError):
    return render_template("dashboard/error.html", title="Form refused",
                           message="This form was not sent from this dashboard, or it has expired. "
                                   "Reload the page and try again."), 400


def _describe(error: ApiError) -> str:
    """The API's message, and the scopes an `insufficient_scope` names."""
    message = error.message or CATALOGUE[error.error].description
    if error.details and error.details.get("required"):
        message += " Needed: " + ", ".join(error.details["required"]) + "."
    return message


@bp.errorhandler(ApiError)
def _api_error(error: ApiError):
    return render_template("dashboard/error.html", title=f"{error.status} {error.error}",
                           message=_describe(error)), error.status


def _fail(error: ApiError) -> None:
    flash(_describe(error), "error")


def _messages(error: ValidationError) -> dict:
    """marshmallow's messages by field (data key), as the API's `details` carries them."""
    return error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}


def _load(schema, data: dict) -> tuple[dict | None, dict]:
    """`schema.load(data)` and no errors, or None and marshmallow's messages by field."""
    try:
        return schema.load(data), {}
    except ValidationError as error:
        return None, _messages(error)


def _unless_refused(work: Callable[[], T], *statuses: int) -> T | None:
    """`work()`, or None when it raises an `ApiError` of one of `statuses`: its message is then
    flashed for the page the view redirects to (any other error is the error page)."""
    try:
        return work()
    except ApiError as error:
        if error.status not in statuses:
            raise
        _fail(error)
        return None


def _hold(kind: str, object_id: str, value: str) -> None:
    """Keep a new value for the next page only (see `DashboardSessions.hold_reveal`)."""
    _sessions().hold_reveal(session["token"], object_id, value, kind)


def _take_reveal(kind: str) -> dict | None:
    """The value held for this page: taken once, whichever page takes it."""
    reveal = _sessions().take_reveal(session["token"])
    return reveal if reveal is not None and reveal.get("kind", "key") == kind else None


# -- sign-in and out --------------------------------------------------------------------------
def _unconfirmed(question: str, consequence: str, verb: str, back: str):
    """The confirmation step of an action that cannot be undone: None when the form says
    `confirm=yes`, else the page that asks (200, nothing done). It repeats the POST with the
    same fields and a fresh CSRF token: a plain form, so it needs no script."""
    if request.form.get("confirm") == "yes":
        return None
    fields = {name: value for name, value in request.form.items() if name not in ("csrf_token", "confirm")}
    return render_template("dashboard/confirm.html", title="Are you sure?", question=question,
                           consequence=consequence, verb=verb, action=request.path, fields=fields, back=back)


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    """Sign in with a secret key. The value is resolved like a bearer key on the admin API and
    then forgotten: the session refers to the key's id."""
    error = None
    if request.method == "POST":
        limits, rate = _usher().limits, _usher().settings.dashboard_sign_in_rate_limit
        name, tenant, mode = SIGN_IN_FAILURES
        try:  # as OTP verify's failure budget: refused once spent, spent by failures only
            limits.check(name, rate, tenant, mode, client_key(), fail_closed=False)
        except ApiError as refused:
            wait = int(refused.headers["Retry-After"])
            message = (f"{_describe(refused)} Too many failed sign-ins from this address: try again in "
                       + (f"{wait} seconds." if wait < 120 else f"{math.ceil(wait / 60)} minutes."))
            return render_template("dashboard/sign_in.html", error=message), refused.status, refused.headers
        value = request.form.get("key", "").strip()
        parsed = parse_key(value)
        caller = None
        if parsed is not None and parsed[0] in SIGN_IN_TYPES:
            caller = _usher().callers.resolve_key(_usher().reader, value, parsed[0])
        if caller is not None:
            session.clear()  # a new session id and a new CSRF secret after sign-in
            session["token"] = _sessions().start(caller.key_id)
            session.permanent = True
            pages = visible_pages(caller)
            return redirect(url_for(pages[0].endpoint if pages else "dashboard.home"), 303)
        limits.spend(name, rate, tenant, mode, client_key())
        if parsed is not None and parsed[0] == "publishable":
            error = f"{SECRET_KEY_REQUIRED}: a publishable key cannot sign in."
        else:
            error = f"{AUTHENTICATION_REQUIRED}: this key is unknown, expired or revoked."
    return render_template("dashboard/sign_in.html", error=error), 400 if error else 200


@bp.route("/sign-out", methods=["POST"])
def sign_out():
    _sessions().end(session.pop("token"))
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("dashboard.sign_in"), 303)


@bp.route("")
@bp.route("/")
def home():
    """The first page this key reaches; a key that reaches none is told so."""
    pages = visible_pages(ctx())
    if pages:
        return redirect(url_for(pages[0].endpoint), 303)
    return render_template("dashboard/error.html", title="Nothing to show",
                           message="This key's scopes reach no dashboard page: "
                                   + ", ".join(sorted(ctx().scopes)) + "."), 200


# -- API keys ---------------------------------------------------------------------------------
@bp.route("/keys")
@requires_scope("keys:write")
def keys():
    rows = [{"key": key, "scopes": sorted(key_scopes(key.type, key.scopes))}
            for key in db_session().scalars(live_keys_query(ctx().organization_id, ctx().mode, now()))]
    return render_template("dashboard/keys.html", keys=rows, reveal=_take_reveal("key"),
                           roll_errors=g.get("roll_errors", {}), scopes=SCOPES,
                           create_errors=g.get("create_errors", {}))


@bp.route("/keys", methods=["POST"])
@requires_scope("keys:write")
def create_key_view():
    form: dict[str, Any] = {"type": request.form.get("type", "")}
    if request.form.getlist("scopes"):
        form["scopes"] = request.form.getlist("scopes")
    data, g.create_errors = _load(KeyCreate(), form)
    if data is None:
        return keys(), 400

    def create() -> tuple[str, str]:
        with transaction() as db:
            key, value = create_key_for(db, app_secret(), ctx(), data["type"], data.get("scopes"), now())
            return key.id, value

    created = _unless_refused(create, 403)  # insufficient_scope: a key gives away only scopes it holds
    if created is not None:
        _hold("key", *created)
        flash(f"Created a {data['type']} key.", "info")
    return redirect(url_for("dashboard.keys"), 303)


@bp.route("/keys/<key_id>/roll", methods=["POST"])
@requires_scope("keys:write")
def roll_key_view(key_id: str):
    data, errors = _load(KeyRoll(), {"expiresIn": request.form.get("expiresIn", "")})
    if data is None:
        g.roll_errors = {key_id: errors}
        return keys(), 400

    if data["expires_in"] == 0:
        old = tenant_get(db_session(), ApiKey, key_id, ctx())
        asking = _unconfirmed(f"Roll the {old.type} key ending in {old.last4} now?",
                              "Its value stops working at once: every shop or server still using it is "
                              "refused until it has the new value.", "Roll now", url_for("dashboard.keys"))
        if asking is not None:
            return asking

    def roll() -> tuple[str, str, str]:
        with transaction() as db:
            old = tenant_get(db, ApiKey, key_id, ctx())
            key, value = roll_key_for(db, app_secret(), ctx(), old, data["expires_in"], now())
            return key.id, value, f"{old.type} key ending in {old.last4}"

    rolled = _unless_refused(roll, 403)
    if rolled is not None:
        new_id, value, label = rolled
        if key_id == ctx().key_id:  # the session's own key: go on with its successor
            _sessions().follow_key(session["token"], new_id)
        _hold("key", new_id, value)
        flash(f"Rolled the {label}.", "info")
    return redirect(url_for("dashboard.keys"), 303)


@bp.route("/keys/<key_id>/revoke", methods=["POST"])
@requires_scope("keys:write")
def revoke_key_view(key_id: str):
    target = tenant_get(db_session(), ApiKey, key_id, ctx())
    asking = _unconfirmed(f"Revoke the {target.type} key ending in {target.last4}?",
                          "It stops working at once, and a revoked key cannot be restored.", "Revoke",
                          url_for("dashboard.keys"))
    if asking is not None:
        return asking

    def revoke() -> str:
        with transaction() as db:
            key = tenant_get(db, ApiKey, key_id, ctx())
            revoke_key_for(db, ctx(), key, now())
            return f"{key.type} key ending in {key.last4}"

    # conflict: a key cannot revoke itself; 403: nor a wider key; 400: nor the last secret key
    label = _unless_refused(revoke, 409, 403, 400)
    if label is not None:
        flash(f"Revoked the {label}.", "info")
    return redirect(url_for("dashboard.keys"), 303)


# -- Settings ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SettingField:
    key: str  # the API's name (data key)
    name: str  # the attribute
    hint: str
    is_list: bool  # a list field is a textarea, one entry a line
    write_only: bool = False  # a secret: never shown, left empty to keep the stored one
    numeric: bool = False
    nullable: bool = False  # an empty input means "none"

    @property
    def seconds(self) -> bool:
        """A duration in seconds: the page shows it in days, hours and minutes too."""
        return self.numeric and self.hint.startswith("Seconds")


# Where the API's description only repeats the page's label, the page says what the label does not.
SETTINGS_HINTS = {
    "accessTokenTtl": "Seconds (1 s – 1 day). Shorter is safer; the SDK refreshes before expiry.",
    "refreshTokenTtl": "Seconds (1 min – 1 year): how long a shopper stays signed in without coming back.",
    "otpCooldown": "Seconds before the same email or phone can be sent another code.",
    "otpRequestsPerHour": "Per email or phone; past it, code requests answer `rate_limited` until the hour ends.",
    "otpRequestsPerIpPerHour": "Per client address (IPv6: per /64). Raise it for drops behind shared addresses.",
    "otpVerifiesPerIpPerHour": "Per client address, wrong and right codes alike.",
}
SETTINGS_FIELDS = [SettingField(field.data_key or name, name,
                                SETTINGS_HINTS.get(field.data_key or name, field.metadata.get("description", "")),
                                isinstance(field, fields.List), field.load_only, isinstance(field, fields.Integer),
                                field.allow_none)
                   for name, field in SettingsSchema().fields.items()
                   if not field.dump_only and name != "plugin_settings"]
PLUGIN_PREFIX = "plugins."  # a plugin's field in the form: `plugins.<its API name>`


def _plugin_fields() -> list[SettingField]:
    """The settings fields of the app's enabled grant plugins (the registry), after Usher's own."""
    return [SettingField(PLUGIN_PREFIX + name, name, field.metadata.get("description", ""), False)
            for name, field in current_app.extensions["usher_registry"].settings_fields.items()]
SETTINGS_LABELS = {"accessTokenTtl": "Access token lifetime", "refreshTokenTtl": "Refresh token lifetime",
                   "otpTtl": "Code lifetime", "otpLength": "Code length", "otpCooldown": "Code cooldown",
                   "otpRequestsPerHour": "Codes per identifier per hour",
                   "otpRequestsPerIpPerHour": "Code requests per address per hour",
                   "otpVerifiesPerIpPerHour": "Verify attempts per address per hour",
                   "allowedOrigins": "Allowed browser origins",
                   "smsAllowedCountries": "Countries SMS codes may go to (this mode)",
                   "smsPerHour": "SMS codes per hour (this mode)",
                   "botDefense": "Bot defense", "botDefenseRoutes": "Routes that need a solved challenge",
                   "botDefenseSiteKey": "Captcha site key", "botDefenseSecret": "Captcha secret key",
                   "altchaComplexity": "ALTCHA complexity"}


def _submitted_setting(field: SettingField):
    """A form field as the API would receive it: lists one entry a line, an empty nullable
    field as none, an empty secret left out (the stored one is kept)."""
    if field.is_list:
        return [line.strip() for line in request.form.get(field.key, "").splitlines() if line.strip()]
    value = request.form.get(field.key, "")
    return None if field.nullable and not value.strip() else value


def _flat(messages) -> list[str]:
    """A field's messages as one list (a list field's are keyed by the entry's index)."""
    if isinstance(messages, dict):
        return [m for key in sorted(messages, key=str) for m in _flat(messages[key])]
    return list(messages)


@bp.route("/settings", methods=["GET", "POST"])
@requires_scope("settings:write")
def settings():
    """Every setting of the key's mode, validated by `SettingsSchema` as `PATCH /settings` is."""
    current = ctx().organization  # the settings of the key's mode, read with the key
    values = {f.key: "" if f.write_only else getattr(current, f.name) for f in SETTINGS_FIELDS}
    plugin_fields = _plugin_fields()
    if plugin_fields:
        stored = stored_plugin_settings(_usher().db, ctx().organization_id, ctx().mode)
        plugin_values = current_app.extensions["usher_registry"].settings_values(stored)
        values.update({f.key: plugin_values[f.name] for f in plugin_fields})
    errors: dict = {}
    if request.method == "POST":
        submitted = {f.key: _submitted_setting(f) for f in SETTINGS_FIELDS
                     if not (f.write_only and not request.form.get(f.key))}
        if plugin_fields:
            submitted["plugins"] = {f.name: request.form.get(f.key, "") for f in plugin_fields}
        try:
            data = SettingsSchema().load(submitted)
            with transaction() as db:
                update_settings(db, ctx(), data, now(), _usher().settings.app_secret)
        except ValidationError as error:
            errors = {key: _flat(messages) for key, messages in _messages(error).items() if key != "plugins"}
            errors.update({PLUGIN_PREFIX + name: _flat(messages)
                           for name, messages in _messages(error).get("plugins", {}).items()})
        except ApiError as error:  # a rule across fields (a captcha needs its keys)
            if error.error != "validation_error":
                raise
            errors = {key: _flat(messages) for key, messages in (error.details or {}).items()}
        else:
            flash("Settings saved.", "info")
            return redirect(url_for("dashboard.settings"), 303)
        values = {**{f.key: "" if f.write_only else submitted.get(f.key, "") for f in SETTINGS_FIELDS},
                  **{f.key: submitted["plugins"][f.name] for f in plugin_fields}}
    return render_template("dashboard/settings.html", fields=SETTINGS_FIELDS + plugin_fields, labels=SETTINGS_LABELS,
                           values=values, errors=errors, secret_set=current.bot_defense_secret is not None), \
        400 if errors else 200


# -- Consumers --------------------------------------------------------------------------------
@bp.route("/consumers")
@requires_scope("consumers:read")
def consumers():
    """Search by email, phone or id; without a query, the consumers page by page."""
    query = request.args.get("q", "").strip()
    errors: dict = {}
    result: dict[str, Any] = {"data": [], "has_more": False}
    db = db_session()
    if ID_SHAPE.fullmatch(query):
        with contextlib.suppress(ApiError):  # unknown here: no result, as for an unknown email
            result["data"] = [tenant_get(db, Consumer, query, ctx())]
    else:
        args = {"startingAfter": request.args.get("startingAfter")} if request.args.get("startingAfter") else {}
        if query:
            args["email" if "@" in query else "phone"] = query
        try:
            args = ConsumerListArgs().load(args)
        except ValidationError as error:
            errors = _messages(error)
        else:
            select = consumer_query(ctx().organization_id, ctx().mode, args.get("email"), args.get("phone"))
            result = page(db, select, Consumer.id, args["limit"], args.get("starting_after"))
    result["data"] = consumer_views(db, result["data"])
    return render_template("dashboard/consumers.html", query=query, result=result,
                           errors=errors), 400 if errors else 200


@bp.route("/consumers/<consumer_id>")
@requires_scope("consumers:read")
def consumer(consumer_id: str):
    db = db_session()
    row = tenant_get(db, Consumer, consumer_id, ctx())
    return render_template("dashboard/consumer.html", consumer=consumer_views(db, [row])[0],
                           sessions=consumer_sessions(db, row), can_end=has_scope(ctx(), "sessions:write"))


@bp.route("/consumers/<consumer_id>/end-sessions", methods=["POST"])
@requires_scope("sessions:write")
def end_consumer_sessions_view(consumer_id: str):
    tenant_get(db_session(), Consumer, consumer_id, ctx())
    asking = _unconfirmed("End all sessions of this consumer?",
                          "Every device signed in as this consumer is signed out and must sign in again.",
                          "End all sessions", url_for("dashboard.consumer", consumer_id=consumer_id))
    if asking is not None:
        return asking
    with transaction() as db:
        count = end_consumer_sessions(db, ctx(), tenant_get(db, Consumer, consumer_id, ctx()), now())
    flash(f"Ended {count} session{'s' if count != 1 else ''}.", "info")
    return redirect(url_for("dashboard.consumer", consumer_id=consumer_id), 303)


@bp.route("/sessions/<session_id>/end", methods=["POST"])
@requires_scope("sessions:write")
def end_session_view(session_id: str):
    with transaction() as db:
        row = tenant_get(db, AuthSession, session_id, ctx())
        consumer_id = row.consumer_id
        count = end_session(db, ctx(), row, now())
    flash("Ended the session." if count else "The session had already ended.", "info")
    return redirect(url_for("dashboard.consumer", consumer_id=consumer_id), 303)


# -- Test outbox ------------------------------------------------------------------------------
@bp.route("/outbox")
@requires_scope("consumers:read")
def outbox():
    args = OutboxArgs().load({})
    messages = outbox_messages(db_session(), _usher().senders.capture, ctx().organization_id, ctx().mode,
                               args["limit"])
    return render_template("dashboard/outbox.html", messages=messages)


# -- Audit log --------------------------------------------------------------------------------
@bp.route("/audit")
@requires_scope("audit:read")
def audit_log():
    """The audit events of the tenant, newest first, filtered by type, page by page (the
    `GET /audit-events` query, validated by its schema)."""
    args = {name: request.args[name] for name in ("type", "startingAfter") if request.args.get(name)}
    errors: dict = {}
    result = {"data": [], "has_more": False}
    try:
        loaded = AuditEventArgs().load(args)
    except ValidationError as error:
        errors = _messages(error)
    else:
        result = audit.list_events(db_session(), ctx().organization_id, ctx().mode, loaded["limit"],
                                   loaded.get("starting_after"), loaded.get("type"))
    return render_template("dashboard/audit.html", result=result, event_type=args.get("type", ""),
                           errors=errors), 400 if errors else 200


# -- Webhooks ---------------------------------------------------------------------------------
def _webhooks_page(status: int = 200, **errors):
    """The endpoints of the tenant, oldest first, page by page (the `GET /webhook-endpoints`
    query), with the forms; `errors` are a refused form's, shown next to its fields."""
    form = {"startingAfter": request.args["startingAfter"]} if request.args.get("startingAfter") else {}
    args, page_errors = _load(PageArgs(), form)
    result = (page(db_session(), endpoints_query(ctx()), WebhookEndpoint.id, args["limit"], args.get("starting_after"))
              if args is not None else {"data": [], "has_more": False})
    return render_template("dashboard/webhooks.html", result=result, page_errors=page_errors,
                           reveal=_take_reveal("webhook"),
                           event_types=current_app.extensions["usher_registry"].event_types,
                           form=g.get("webhook_form", {}), create_errors=errors.get("create", {}),
                           rotate_errors=errors.get("rotate", {}),
                           private_targets=_usher().settings.private_webhook_targets_allowed), \
        400 if page_errors else status


@bp.route("/webhooks")
@requires_scope("webhooks:write")
def webhooks():
    return _webhooks_page()


@bp.route("/webhooks", methods=["POST"])
@requires_scope("webhooks:write")
def create_webhook_view():
    """Validated by the API's `WebhookEndpointIn`, then its URL rules (`UrlRefused`'s reason)."""
    form = {"url": request.form.get("url", "").strip(), "events": request.form.getlist("events")}
    if request.form.get("description", "").strip():
        form["description"] = request.form["description"].strip()
    data, errors = _load(WebhookEndpointIn(), form)
    if data is not None:
        try:
            endpoint, secret = create_endpoint_for(_usher(), events_of(current_app), ctx(), data)
        except ApiError as error:
            if error.error != "validation_error":
                raise
            errors = error.details or {}
    if errors:
        g.webhook_form = form
        return _webhooks_page(400, create=errors)
    _hold("webhook", endpoint.id, secret)
    flash(f"Created the endpoint for {endpoint.url}.", "info")
    return redirect(url_for("dashboard.webhooks"), 303)


@bp.route("/webhooks/<endpoint_id>")
@requires_scope("webhooks:write")
def webhook(endpoint_id: str):
    """An endpoint and its latest deliveries (the `GET …/deliveries` query)."""
    args = DeliveryArgs().load({})
    endpoint, deliveries = endpoint_deliveries(db_session(), ctx(), endpoint_id, args["limit"])
    return render_template("dashboard/webhook.html", endpoint=endpoint, deliveries=deliveries, now=now())


@bp.route("/webhooks/<endpoint_id>/rotate-secret", methods=["POST"])
@requires_scope("webhooks:write")
def rotate_webhook_secret_view(endpoint_id: str):
    data, errors = _load(SecretRotation(), {"expiresIn": request.form.get("expiresIn", "")})
    if data is None:
        return _webhooks_page(400, rotate={endpoint_id: errors})
    endpoint, secret = rotate_secret_for(_usher(), ctx(), endpoint_id, data["expires_in"])
    _hold("webhook", endpoint.id, secret)
    until = endpoint.previous_expires_at
    flash(f"Rotated the signing secret of {endpoint.url}. "
          + (f"The old secret signs too until {_when(until)}." if until and until > now()
             else "The old secret no longer signs."), "info")
    return redirect(url_for("dashboard.webhooks"), 303)


@bp.route("/webhooks/<endpoint_id>/delete", methods=["POST"])
@requires_scope("webhooks:write")
def delete_webhook_view(endpoint_id: str):
    target = tenant_get(db_session(), WebhookEndpoint, endpoint_id, ctx())
    asking = _unconfirmed(f"Delete the endpoint for {target.url}?",
                          "It receives no more events, and its pending deliveries are dropped.", "Delete",
                          url_for("dashboard.webhooks"))
    if asking is not None:
        return asking
    endpoint = delete_endpoint_for(_usher(), events_of(current_app), ctx(), endpoint_id)
    flash(f"Deleted the endpoint for {endpoint.url}.", "info")
    return redirect(url_for("dashboard.webhooks"), 303)
