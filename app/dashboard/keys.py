"""API keys: the tenant's live keys, and creating, rolling and revoking them (a new value is
shown once)."""

from __future__ import annotations

from flask import flash, g, redirect, render_template, request, session, url_for

from app.api.helpers import app_secret, db_session, now, tenant_get, transaction
from app.dashboard.common import (
    bp,
    ctx,
    dashboard_sessions,
    load,
    requires_scope,
    take_reveal,
    unconfirmed,
    unless_refused,
)
from app.models import ApiKey
from app.schemas.admin import KeyCreate, KeyRoll
from app.security.scopes import SCOPES, key_scopes
from app.services.orgs import create_key_for, live_keys, revoke_key_for, roll_key_for


@bp.route("/keys")
@requires_scope("keys:write")
def keys():
    rows = [{"key": key, "scopes": sorted(key_scopes(key.type, key.scopes))}
            for key in live_keys(db_session(), ctx().organization_id, ctx().mode, now())]
    return render_template("dashboard/keys.html", keys=rows, reveal=take_reveal("key"),
                           roll_errors=g.get("roll_errors", {}), scopes=SCOPES,
                           create_errors=g.get("create_errors", {}))


@bp.route("/keys", methods=["POST"])
@requires_scope("keys:write")
def create_key_view():
    form: dict[str, str | list[str]] = {"type": request.form.get("type", "")}
    if request.form.getlist("scopes"):
        form["scopes"] = request.form.getlist("scopes")
    data, g.create_errors = load(KeyCreate(), form)
    if data is None:
        return keys(), 400

    def create() -> str:
        with transaction() as db:  # the key and its value held for the next page: both or neither
            key, value = create_key_for(db, app_secret(), ctx(), data["type"], data.get("scopes"), now())
            dashboard_sessions().hold_reveal(session["token"], key.id, value, within=db)
            return key.id

    created = unless_refused(create, 403)  # insufficient_scope: a key gives away only scopes it holds
    if created is not None:
        flash(f"Created a {data['type']} key.", "info")
    return redirect(url_for("dashboard.keys"), 303)


@bp.route("/keys/<key_id>/roll", methods=["POST"])
@requires_scope("keys:write")
def roll_key_view(key_id: str):
    data, errors = load(KeyRoll(), {"expiresIn": request.form.get("expiresIn", "")})
    if data is None:
        g.roll_errors = {key_id: errors}
        return keys(), 400

    if data["expires_in"] == 0:
        old = tenant_get(db_session(), ApiKey, key_id, ctx())
        asking = unconfirmed(f"Roll the {old.type} key ending in {old.last4} now?",
                             "Its value stops working at once: every shop or server still using it is "
                             "refused until it has the new value.", "Roll now", url_for("dashboard.keys"))
        if asking is not None:
            return asking

    def roll() -> str:
        """One transaction: the roll, its value held for the next page and, when the session's own
        key is rolled, the session moved to the successor. Were the value held after the roll
        commits, a failure in between would leave a successor whose value nobody ever saw (and,
        for a roll "now", the session's key expired: the merchant locked out)."""
        with transaction() as db:
            old = tenant_get(db, ApiKey, key_id, ctx())
            key, value = roll_key_for(db, app_secret(), ctx(), old, data["expires_in"], now())
            dashboard_sessions().hold_reveal(session["token"], key.id, value, within=db,
                                             follow_key=key_id == ctx().key_id)
            return f"{old.type} key ending in {old.last4}"

    label = unless_refused(roll, 403)
    if label is not None:
        flash(f"Rolled the {label}.", "info")
    return redirect(url_for("dashboard.keys"), 303)


@bp.route("/keys/<key_id>/revoke", methods=["POST"])
@requires_scope("keys:write")
def revoke_key_view(key_id: str):
    target = tenant_get(db_session(), ApiKey, key_id, ctx())
    asking = unconfirmed(f"Revoke the {target.type} key ending in {target.last4}?",
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
    label = unless_refused(revoke, 409, 403, 400)
    if label is not None:
        flash(f"Revoked the {label}.", "info")
    return redirect(url_for("dashboard.keys"), 303)
